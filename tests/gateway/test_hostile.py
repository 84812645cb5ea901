"""A corpus of hostile input: each gets a clean 4xx in OpenAI's shape, nothing is billed,
the next normal request is served; tenants see only their own files, batches and usage;
keys never reach the logs."""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import openai
import pytest
from batch_helpers import ended, jsonl, line, submit, wait_for
from floor_helpers import ADMIN, Gateway, MakeGateway, factory_toml
from servers import serving

from tokenfactory.catalog import Catalog
from tokenfactory.config.factory import load_factory
from tokenfactory.gateway.app import create_app
from tokenfactory.gateway.runtime import build_floor
from tokenfactory.ledger import Ledger, hash_secret

MODEL = "llama-3.1-8b"
CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
CHAT_JSON = json.dumps(CHAT).encode()


def send(
    gw: Gateway,
    key: str | None,
    body: object = CHAT,
    *,
    raw: bytes | None = None,
    media: str | None = "application/json",
    path: str = "/v1/chat/completions",
) -> httpx.Response:
    headers = {} if key is None else {"Authorization": f"Bearer {key}"}
    if media is not None:
        headers["Content-Type"] = media
    content = raw if raw is not None else json.dumps(body).encode()
    return httpx.post(gw.url + path, content=content, headers=headers, timeout=60)


def assert_error(r: httpx.Response, status: int, param: str | None = None) -> dict[str, object]:
    assert r.status_code == status, r.text[:500]
    assert r.headers["content-type"].startswith("application/json")
    error: dict[str, object] = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    if param is not None:
        assert error["param"] == param, error
    return error


def raw_http(gw: Gateway, request: bytes) -> tuple[int, bytes]:
    """Send bytes as they are (no client tidies them) and read the status line and rest."""
    url = urlsplit(gw.url)
    with socket.create_connection((url.hostname, url.port), timeout=30) as s:
        s.sendall(request)
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    status_line, _, rest = answer.partition(b"\r\n")
    return int(status_line.split()[1]), rest


def get_raw(gw: Gateway, path: str, key: str) -> tuple[int, bytes]:
    head = f"GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n"
    return raw_http(gw, (head + "Connection: close\r\n\r\n").encode("latin-1"))


@pytest.fixture
def gw(twin: str, make_gateway: MakeGateway) -> Gateway:
    return make_gateway([twin])


@pytest.fixture(params=["sqlite", "postgresql"])
def any_gw(
    request: pytest.FixtureRequest, twin: str, make_gateway: MakeGateway
) -> Iterator[Gateway]:
    database = None if request.param == "sqlite" else request.getfixturevalue("pg_database")
    yield make_gateway([twin], database=database)


def test_hostile_bodies_get_a_clean_4xx_and_nothing_is_billed(gw: Gateway) -> None:
    key = gw.key()
    chat = CHAT_JSON.decode()
    cases: list[tuple[httpx.Response, int, str | None]] = [
        (send(gw, key, raw=b'{"model": "' + b"a" * 10_000_000 + b'"}'), 413, None),
        (send(gw, key, raw=b"[" * 100_000 + b"]" * 100_000), 400, None),
        (send(gw, key, raw=b'{"a":' * 50_000 + b"1" + b"}" * 50_000), 400, None),
        (
            send(gw, key, raw=chat.replace('"max_tokens": 4', '"max_tokens": 1e999').encode()),
            400,
            "max_tokens",
        ),
        (send(gw, key, raw=chat.replace("}", ', "temperature": NaN}', 1).encode()), 400, None),
        (send(gw, key, raw=chat.replace("4}", "-Infinity}").encode()), 400, None),
        (send(gw, key, raw=chat.replace('"hi"', '"\\ud800 lone"').encode()), 400, None),
        (send(gw, key, raw=chat.replace('"model"', '"\\udfff"').encode()), 400, None),
        (send(gw, key, raw=chat.encode("utf-16")), 400, None),
        (send(gw, key, raw=chat.encode("utf-16-le")), 400, None),
        (send(gw, key, raw=chat.replace("hi", "café").encode("latin-1")), 400, None),
        (send(gw, key, raw=b"\xef\xbb\xbf" + CHAT_JSON), 400, None),  # a UTF-8 byte order mark
        (send(gw, key, raw=b""), 400, None),
        (send(gw, key, raw=b"[]"), 400, None),
        (send(gw, key, raw=b'"just a string"'), 400, None),
        (send(gw, key, media="text/plain"), 415, None),
        (send(gw, key, media="application/x-www-form-urlencoded"), 415, None),
        (send(gw, key, media="application/json; charset=latin-1"), 415, None),
        (send(gw, key, {**CHAT, "model": "x' OR '1'='1' --"}), 404, "model"),
        (send(gw, key, {**CHAT, "model": "llama-3.1-8b\x00"}), 404, "model"),
        (send(gw, key, {**CHAT, "n": 10**9}), 400, "n"),
        (send(gw, key, {**CHAT, "max_tokens": 10**30}), 400, "max_tokens"),
        (send(gw, key, {**CHAT, "max_completion_tokens": 2**64}), 400, None),  # named max_tokens
        (
            send(gw, key, {**CHAT, "logit_bias": {str(i): 100 for i in range(10_000)}}),
            400,
            "logit_bias",
        ),
        (send(gw, key, {**CHAT, "stop": ["x"] * 10_000}), 400, "stop"),
        (send(gw, key, {**CHAT, "seed": 10**30}), 400, "seed"),
        (send(gw, key, {**CHAT, "temperature": 1e308}), 400, "temperature"),
        (send(gw, key, {**CHAT, "messages": [{"role": "root", "content": "x"}]}), 400, None),
        (send(gw, key, {**CHAT, "metadata": {str(i): "v" for i in range(1000)}}), 400, "metadata"),
        (send(gw, key, {**CHAT, "user": "u" * 100_000}), 400, "user"),
        (send(gw, key, {"model": MODEL, "prompt": [1, 2]}, path="/v1/completions"), 400, None),
        (send(gw, "x' OR '1'='1"), 401, None),
        (send(gw, None, raw=b"{" * 1000), 401, None),  # no key: the body is not even read
    ]
    for response, status, param in cases:
        assert_error(response, status, param)
    # A control character in a header never reaches the app: the HTTP parser (httptools)
    # refuses the request itself, in its own words.
    assert send(gw, key + "\x7f").status_code == 400
    assert gw.ledger.events() == []  # nothing ran, nothing was billed
    ok = send(gw, key)
    assert ok.status_code == 200 and ok.json()["usage"]["completion_tokens"] == 4


def test_crlf_in_fields_and_headers_injects_nothing(gw: Gateway) -> None:
    key = gw.key()
    crlf = "x\r\nSet-Cookie: stolen=1\r\nX-Injected: yes\r\n\r\n<html>"
    served = send(gw, key, {**CHAT, "user": crlf, "metadata": {"k\r\nX-Injected": crlf}})
    assert served.status_code == 200
    assert "set-cookie" not in served.headers and "x-injected" not in served.headers
    refused = send(gw, key, {**CHAT, "model": crlf})
    assert_error(refused, 404, "model")
    assert "set-cookie" not in refused.headers and "x-injected" not in refused.headers
    # Raw requests no client would send: a bare LF, NUL and CR inside header values.
    for header in (
        b"X-A: a\nX-B: b",
        b"X-A: a\x00b",
        b"X-A: a\rb",
        b"Authorization: Bearer \xff\xfe",
    ):
        request = (
            b"GET /v1/models HTTP/1.1\r\nHost: x\r\n" + header + b"\r\nConnection: close\r\n\r\n"
        )
        status, rest = raw_http(gw, request)
        assert status in (400, 401), (header, rest[:300])
        assert b"X-B" not in rest.split(b"\r\n\r\n")[0]
    assert send(gw, key).status_code == 200


def test_odd_and_foreign_ids_are_404s_that_leak_nothing(any_gw: Gateway) -> None:
    gw = any_gw
    alice, mallory = gw.key("alice"), gw.key("mallory")
    upload = httpx.post(
        gw.url + "/v1/files",
        headers={"Authorization": f"Bearer {alice}"},
        files={"file": ("in.jsonl", jsonl([line("a", MODEL, 2)]))},
        data={"purpose": "batch"},
        timeout=60,
    )
    assert upload.status_code == 200, upload.text
    file_id = upload.json()["id"]
    created = send(
        gw,
        alice,
        {"input_file_id": file_id, "endpoint": "/v1/chat/completions", "completion_window": "24h"},
        path="/v1/batches",
    )
    assert created.status_code == 200, created.text
    batch_id = created.json()["id"]

    # Another tenant's ids answer exactly as ids that exist nowhere.
    fake_file, fake_batch = "file-" + "0" * 24, "batch_" + "0" * 24
    for theirs, nobody in (
        (f"/v1/files/{file_id}", f"/v1/files/{fake_file}"),
        (f"/v1/files/{file_id}/content", f"/v1/files/{fake_file}/content"),
        (f"/v1/batches/{batch_id}", f"/v1/batches/{fake_batch}"),
    ):
        a = assert_error(httpx.get(gw.url + theirs, headers=_auth(mallory), timeout=30), 404)
        b = assert_error(httpx.get(gw.url + nobody, headers=_auth(mallory), timeout=30), 404)
        assert str(a["message"]).replace(file_id, "ID").replace(batch_id, "ID") == str(
            b["message"]
        ).replace(fake_file, "ID").replace(fake_batch, "ID")
    cancel = httpx.post(gw.url + f"/v1/batches/{batch_id}/cancel", headers=_auth(mallory))
    assert_error(cancel, 404, "batch_id")
    steal = {
        "input_file_id": file_id,
        "endpoint": "/v1/chat/completions",
        "completion_window": "24h",
    }
    assert_error(send(gw, mallory, steal, path="/v1/batches"), 404, "input_file_id")
    listed = httpx.get(gw.url + "/v1/batches", params={"after": batch_id}, headers=_auth(mallory))
    assert listed.status_code == 200 and listed.json()["data"] == []

    # Traversal, NUL, odd encodings and very long ids: 404 (or 400), never a 5xx or a file.
    hostile = [
        "../../../../etc/passwd",
        "..%2f..%2f..%2fetc%2fpasswd",
        "%2e%2e%2f%2e%2e%2fetc%2fpasswd",
        "%2e%2e",
        "file-%00",
        "%00",
        file_id + "%00",
        "%ff%fe",
        "x" * 10_000,
        "%27%20OR%20%271%27%3D%271",
        "%E2%80%AE" + file_id,
        file_id.upper(),
    ]
    for odd in hostile:
        for path in (f"/v1/files/{odd}", f"/v1/files/{odd}/content", f"/v1/batches/{odd}"):
            status, rest = get_raw(gw, path, alice)
            assert status in (400, 404), (path, rest[:300])
            assert b"root:" not in rest and b'"error"' in rest, (path, rest[:300])
        status, rest = get_raw(gw, f"/v1/batches?after={odd}", alice)
        assert status in (200, 400), (odd, rest[:300])
        cancel = httpx.post(gw.url + f"/v1/batches/{odd}/cancel", headers=_auth(alice))
        assert cancel.status_code in (400, 404), (odd, cancel.text[:300])
    for escape in ("../../../../etc/passwd", "..%2f..%2f..%2f..%2fetc%2fpasswd", "%2e%2e/app.py"):
        status, rest = get_raw(gw, "/dashboard/" + escape, alice)  # the static files' mount
        assert status == 404 and b"root:" not in rest and b'"error"' in rest, rest[:300]
    for odd_name in ("a\x00b.jsonl", "../../etc/passwd", "n" * 1000):
        r = httpx.post(
            gw.url + "/v1/files",
            headers=_auth(alice),
            files={"file": (odd_name, b"{}\n")},
            data={"purpose": "batch"},
            timeout=60,
        )
        assert r.status_code in (200, 400), (odd_name, r.text[:300])

    # A batch whose input holds a NUL id, deep nesting or a lone surrogate fails its
    # validation line by line; it is not left stuck.
    c = openai.OpenAI(base_url=gw.v1, api_key=alice, max_retries=0, timeout=60)
    deep = b"[" * 5_000 + b"]" * 5_000 + b"\n"
    lone = json.dumps(line("s", MODEL, 2, "\ud800")).encode() + b"\n"
    failed = wait_for(c, submit(c, jsonl([line("a\x00b", MODEL, 2)]) + deep + lone).id, ended)
    assert failed.status == "failed" and failed.errors is not None
    codes = [(e.line, e.code) for e in failed.errors.data or []]
    assert codes == [(1, "invalid_custom_id"), (2, "invalid_json_line"), (3, "invalid_json_line")]

    # The owner still sees everything; the server still serves.
    mine = httpx.get(gw.url + f"/v1/batches/{batch_id}", headers=_auth(alice), timeout=30)
    assert mine.status_code == 200 and mine.json()["input_file_id"] == file_id
    content = httpx.get(gw.url + f"/v1/files/{file_id}/content", headers=_auth(alice), timeout=30)
    assert content.status_code == 200 and json.loads(content.text)["custom_id"] == "a"
    assert send(gw, mallory).status_code == 200


def test_a_tenant_sees_only_its_own_usage(gw: Gateway) -> None:
    alice, bob = gw.key("alice"), gw.key("bob")
    alice_2 = gw.key("alice")  # a second key of the same tenant
    for key, tokens in ((alice, 4), (alice_2, 3), (bob, 5), (bob, 6)):
        r = send(gw, key, {**CHAT, "max_tokens": tokens})
        assert r.status_code == 200, r.text
    seen = {}
    for name, key in (("alice", alice), ("bob", bob)):
        r = httpx.get(gw.url + "/v1/usage", headers=_auth(key), timeout=30)
        assert r.status_code == 200, r.text
        seen[name] = r.json()
    events = gw.ledger.events()
    for name, body in seen.items():
        tenant_keys = {k.id for k in gw.ledger.list_keys() if k.tenant == name}
        mine = [e for e in events if e.key_id in tenant_keys]
        assert body["tenant"] == name and body["requests"] == len(mine)
        assert body["output_tokens"] == sum(e.output_tokens for e in mine)
        assert body["input_tokens"] == sum(e.input_tokens for e in mine)
        charged = sum(e.revenue_micros for e in mine)
        assert body["charged_usd"] == f"{charged / 1_000_000:.6f}" and charged > 0
        assert [(d["model"], d["tier"]) for d in body["data"]] == [(MODEL, "standard")]
    assert seen["alice"]["output_tokens"] == 7 and seen["bob"]["output_tokens"] == 11
    assert "bob" not in json.dumps(seen["alice"]) and "alice" not in json.dumps(seen["bob"])
    assert_error(httpx.get(gw.url + "/v1/usage", timeout=30), 401)
    bad = httpx.get(gw.url + "/v1/usage", params={"window": "9999999999d"}, headers=_auth(bob))
    assert_error(bad, 400, "window")
    assert_error(httpx.get(gw.url + "/v1/factory/pnl", headers=_auth(alice), timeout=30), 403)
    empty = httpx.get(gw.url + "/v1/usage", params={"window": "1m"}, headers=_auth(gw.key("eve")))
    assert empty.json()["requests"] == 0 and empty.json()["charged_usd"] == "0.000000"


def test_the_admin_key_is_matched_whole(gw: Gateway) -> None:
    url = gw.url + "/v1/factory/pnl"
    assert httpx.get(url, headers=_auth(ADMIN), timeout=30).status_code == 200
    for guess in (ADMIN[:-1], ADMIN + "x", ADMIN[:-1] + "X", ADMIN.upper(), ADMIN * 2):
        assert_error(httpx.get(url, headers=_auth(guess), timeout=30), 403)


def test_keys_never_reach_the_logs(
    catalog: Catalog, twin: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "factory.toml"
    path.write_text(factory_toml([twin]))
    database = f"sqlite:///{tmp_path / 'ledger.db'}"
    floor = build_floor(load_factory(path, catalog), catalog, database)
    ledger = Ledger(database)
    ledger.migrate()
    _, secret = ledger.create_key("acme")
    wrong = "tf-" + "w" * 40
    caplog.set_level(logging.DEBUG)
    # uvicorn's own loggers (access log included) at debug, into the captured root.
    with serving(create_app(floor), log_config=None, log_level="debug", access_log=True) as url:
        gw = Gateway(url, ledger)
        assert send(gw, secret).status_code == 200
        assert send(gw, secret, {**CHAT, "stream": True}).status_code == 200
        assert send(gw, wrong).status_code == 401
        assert send(gw, secret, raw=b"{not json").status_code == 400
        assert httpx.get(url + "/v1/factory/pnl", headers=_auth(ADMIN)).status_code == 200
        assert httpx.get(url + "/v1/factory/pnl", headers=_auth(secret)).status_code == 403
        assert httpx.get(url + "/v1/usage", headers=_auth(wrong)).status_code == 401
    ledger.close()
    logged = "\n".join(f"{r.getMessage()} {r.args!r} {r.exc_text or ''}" for r in caplog.records)
    assert "POST /v1/chat/completions" in logged  # the access log was captured
    for material in (secret, wrong, ADMIN, hash_secret(secret), secret[:12]):
        assert material not in logged


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}
