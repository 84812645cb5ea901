"""Bad input gets the right 4xx in OpenAI's shape, the server keeps serving, the ledger stays
intact."""

from __future__ import annotations

from decimal import Decimal

import httpx
import pytest
from floor_helpers import Gateway, MakeGateway

CHAT = {"model": "llama-3.1-8b", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}


def post(
    gw: Gateway,
    key: str | None,
    body: object = CHAT,
    raw: bytes | None = None,
    path: str = "/chat/completions",
) -> httpx.Response:
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    if raw is not None:
        return httpx.post(gw.v1 + path, content=raw, headers=headers, timeout=30)
    return httpx.post(gw.v1 + path, json=body, headers=headers, timeout=30)


def assert_error(
    r: httpx.Response, status: int, code: str | None = None, param: str | None = None
) -> None:
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"]
    if code is not None:
        assert error["code"] == code
    if param is not None:
        assert error["param"] == param


@pytest.fixture
def gw(twin: str, make_gateway: MakeGateway) -> Gateway:
    return make_gateway([twin])


def test_each_bad_request_is_a_clean_4xx_and_the_server_keeps_serving(gw: Gateway) -> None:
    key = gw.key()
    cases = [
        (post(gw, key, raw=b'{"model": "llama-3.1-8b", "messages": ['), 400, None, None),
        (post(gw, key, raw=b"\xff\xfe not json"), 400, None, None),
        (post(gw, key, {**CHAT, "max_tokens": "lots"}), 400, None, "max_tokens"),
        (post(gw, key, {**CHAT, "max_tokens": -5}), 400, None, "max_tokens"),
        (post(gw, key, {**CHAT, "max_tokens": 10_000_000}), 400, None, "max_tokens"),
        (post(gw, key, {**CHAT, "messages": []}), 400, None, "messages"),
        (post(gw, key, {**CHAT, "n": 3}), 400, None, "n"),
        (post(gw, key, {**CHAT, "frobnicate": True}), 400, None, "frobnicate"),
        (post(gw, key, {**CHAT, "service_tier": "platinum"}), 400, None, "service_tier"),
        (post(gw, key, {**CHAT, "model": "gpt-7"}), 404, "model_not_found", "model"),
        (post(gw, None), 401, "invalid_api_key", None),
        (post(gw, "tf-not-a-real-key"), 401, "invalid_api_key", None),
        (post(gw, key, raw=b'{"x": "' + b"a" * 5_000_000 + b'"}'), 413, None, None),
        (
            post(gw, key, {"model": "llama-3.1-8b", "prompt": ["a", "b"]}, path="/completions"),
            400,
            None,
            None,
        ),
    ]
    for response, status, code, param in cases:
        assert_error(response, status, code, param)
    assert gw.ledger.events() == []  # nothing ran, nothing was billed
    ok = post(gw, key)
    assert ok.status_code == 200 and ok.json()["usage"]["completion_tokens"] == 4


def test_a_query_parameter_given_twice_is_refused_and_named(gw: Gateway) -> None:
    """No route takes a list: `?after=a&after=b` would be read as one of them, an answer
    to a question the client did not ask."""
    headers = {"Authorization": f"Bearer {gw.key()}"}
    for url in (gw.v1 + "/batches?after=a&after=b", gw.v1 + "/batches?limit=5&limit=7"):
        r = httpx.get(url, headers=headers)
        assert_error(r, 400, None, url.rsplit("&", 1)[1].split("=")[0])
        assert "more than once" in r.json()["error"]["message"]
    ok = httpx.get(gw.v1 + "/batches?limit=5&after=", headers=headers)
    assert ok.status_code == 200 and ok.json()["data"] == []


def test_an_output_cap_past_the_context_names_the_field_the_client_sent(gw: Gateway) -> None:
    key = gw.key()
    bare = {k: v for k, v in CHAT.items() if k != "max_tokens"}
    for field in ("max_tokens", "max_completion_tokens"):
        r = post(gw, key, {**bare, field: 10_000_000})
        assert_error(r, 400, None, field)
        assert r.json()["error"]["message"].startswith(f"{field} 10000000 plus the prompt")
    assert gw.ledger.events() == []


def test_a_tier_the_key_may_not_use_is_forbidden(gw: Gateway) -> None:
    key = gw.key(allowed_tiers=["standard", "flex"])
    assert_error(
        post(gw, key, {**CHAT, "service_tier": "priority"}), 403, "forbidden", "service_tier"
    )
    assert post(gw, key, {**CHAT, "service_tier": "flex"}).status_code == 200


def test_an_exhausted_budget_is_refused_and_never_overspent(gw: Gateway) -> None:
    # Enough for a few small requests at Llama 3.1 8B's list price.
    key = gw.key(budget_usd=Decimal("0.00002"))
    statuses = [post(gw, key, {**CHAT, "max_tokens": 16}).status_code for _ in range(12)]
    assert 200 in statuses and 429 in statuses
    refused = post(gw, key, {**CHAT, "max_tokens": 16})
    assert_error(refused, 429, "insufficient_quota")
    record = gw.ledger.find_key(key)
    assert record is not None and record.budget_micros is not None
    assert record.spent_micros <= record.budget_micros
    billed = sum(e.revenue_micros for e in gw.ledger.events(key_id=record.id))
    assert billed == record.spent_micros  # every reservation was settled exactly


def test_token_rate_limit_answers_429_with_retry_after(gw: Gateway) -> None:
    key = gw.key(tokens_per_minute=60)
    first = post(gw, key, {**CHAT, "max_tokens": 40})
    assert first.status_code == 200
    limited = post(gw, key, {**CHAT, "max_tokens": 40})
    assert_error(limited, 429, "rate_limit_exceeded")
    assert int(limited.headers["Retry-After"]) >= 1
