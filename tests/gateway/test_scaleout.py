"""Two gateways, one PostgreSQL ledger and one Redis, over the same twin engines: totals,
budgets, token rate limits and batches hold across them as they do in one."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from batch_helpers import ended, jsonl, line, output_lines, submit, wait_for
from floor_helpers import ADMIN, Gateway, MakeGateway, factory_toml, twin_app, wait_until
from prometheus_client import CollectorRegistry
from servers import free_port, serving
from sqlalchemy import select
from test_batch_durability import check_billing, client, delivered_tokens, finished_lines

from tokenfactory.catalog import Catalog
from tokenfactory.config.factory import load_factory
from tokenfactory.errors import ConfigError
from tokenfactory.gateway.redis_buckets import RedisBuckets
from tokenfactory.ledger import Ledger
from tokenfactory.ledger.schema import BatchRow

REDIS = os.environ.get("TOKENFACTORY_TEST_REDIS", "redis://127.0.0.1:6379/0")
MODEL = "llama-3.1-8b"


@pytest.fixture
def prefix() -> Iterator[str]:
    """A Redis key prefix of this test's own; its keys are deleted afterwards."""
    name = f"tf-test-{uuid.uuid4().hex[:12]}:"
    r = redis.Redis.from_url(REDIS)
    try:
        r.ping()
    except redis.ConnectionError as e:
        raise AssertionError(f"Redis is not reachable at {REDIS}: {e}") from e
    yield name
    for k in r.scan_iter(match=name + "*"):
        r.delete(k)
    r.close()


@pytest.fixture
def twins(catalog: Catalog) -> Iterator[list[str]]:
    """Two twin engines, 20 times faster than real time."""
    with ExitStack() as stack:
        yield [stack.enter_context(serving(twin_app(catalog))) for _ in range(2)]


def shared(
    replicas: list[str], prefix: str, lease_s: float = 2.0, redis_url: str = REDIS, **kw: Any
) -> str:
    """A factory text whose gateways share the Redis at `redis_url` under `prefix`."""
    server = f'[server]\nredis = "{redis_url}"\nredis_prefix = "{prefix}"\n'
    server += f"batch_lease_s = {lease_s}\n"
    return factory_toml(replicas, **kw).replace("[server]\n", server, 1)


def two(make_gateway: MakeGateway, text: str, database: str) -> tuple[Gateway, Gateway]:
    """Two gateways from one factory text on one database."""
    return make_gateway(text=text, database=database), make_gateway(text=text, database=database)


def chat(gw: Gateway, key: str, max_tokens: int, text: str = "hi") -> httpx.Response:
    body = {"model": MODEL, "messages": [{"role": "user", "content": text}]}
    body["max_tokens"] = max_tokens
    headers = {"Authorization": f"Bearer {key}"}
    return httpx.post(gw.v1 + "/chat/completions", json=body, headers=headers, timeout=60)


def pnl(gw: Gateway) -> dict[str, Any]:
    r = httpx.get(gw.v1 + "/factory/pnl", headers={"Authorization": f"Bearer {ADMIN}"})
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    return out


def test_two_gateways_keep_one_set_of_books(
    pg_database: str, twins: list[str], make_gateway: MakeGateway, prefix: str
) -> None:
    a, b = two(make_gateway, shared(twins, prefix), pg_database)
    record, key = a.ledger.create_key("acme")
    # Concurrent requests spread over both gateways (and both engines behind each).
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda i: chat((a, b)[i % 2], key, 5 + i % 7), range(24)))
    assert all(r.status_code == 200 for r in answers), [r.text for r in answers]
    usage = [r.json()["usage"] for r in answers]
    assert [u["completion_tokens"] for u in usage] == [5 + i % 7 for i in range(24)]
    events = a.ledger.events(key_id=record.id, limit=1000)
    assert sorted(e.request_id for e in events) == sorted(r.json()["id"] for r in answers)
    assert sum(e.output_tokens for e in events) == sum(u["completion_tokens"] for u in usage)
    assert sum(e.input_tokens for e in events) == sum(u["prompt_tokens"] for u in usage)
    assert {e.replica for e in events} == {"twin-0", "twin-1"}
    # Either gateway reports the same P&L: the ledger's, not its own.
    seen_a, seen_b = pnl(a), pnl(b)
    assert seen_a["tokens"] == seen_b["tokens"]
    assert seen_a["tokens"]["output"] == sum(u["completion_tokens"] for u in usage)
    assert seen_a["revenue_usd"] == seen_b["revenue_usd"] > 0
    key_now = a.ledger.get_key(record.id)
    assert key_now is not None
    assert key_now.spent_micros == sum(e.revenue_micros for e in events)


def test_a_budget_shared_by_two_gateways_is_not_overspent(
    pg_database: str, twins: list[str], make_gateway: MakeGateway, prefix: str
) -> None:
    a, b = two(make_gateway, shared(twins, prefix), pg_database)
    record, key = a.ledger.create_key("acme", budget_usd=Decimal("0.0003"))
    in_flight = 8
    with ThreadPoolExecutor(in_flight) as pool:
        answers = list(pool.map(lambda i: chat((a, b)[i % 2], key, 200), range(40)))
    served = [r for r in answers if r.status_code == 200]
    refused = [r for r in answers if r.status_code != 200]
    assert served and refused
    assert {r.status_code for r in refused} == {429}
    assert {r.json()["error"]["code"] for r in refused} == {"insufficient_quota"}
    # Both gateways served from the one budget and both were refused once it was spent.
    assert {i % 2 for i, r in enumerate(answers) if r.status_code == 200} == {0, 1}
    assert {i % 2 for i, r in enumerate(answers) if r.status_code == 429} == {0, 1}
    events = a.ledger.events(key_id=record.id, limit=1000)
    assert len(events) == len(served)
    key_now = a.ledger.get_key(record.id)
    assert key_now is not None and key_now.budget_micros == 300
    billed = sum(e.revenue_micros for e in events)
    assert key_now.spent_micros == billed  # every reservation settled exactly
    # Reservations are estimates: at most the requests in flight together can go past it.
    most = max(e.revenue_micros for e in events)
    assert billed <= key_now.budget_micros + in_flight * most
    # And the budget was used, not refused early: another request no longer fits.
    assert chat(a, key, 200).status_code == chat(b, key, 200).status_code == 429


def test_a_token_rate_limit_holds_across_two_gateways(
    pg_database: str, twins: list[str], make_gateway: MakeGateway, prefix: str
) -> None:
    a, b = two(make_gateway, shared(twins, prefix), pg_database)
    # Each request is estimated at 1 prompt token ("hi") + 20 output tokens = 21: the
    # bucket holds ten of them and refills 3.5 tokens a second.
    per_minute, cost = 210, 21
    record, key = a.ledger.create_key("acme", tokens_per_minute=per_minute)
    started = time.monotonic()
    answers = [chat((a, b)[i % 2], key, 20) for i in range(30)]
    elapsed = time.monotonic() - started
    admitted = [i for i, r in enumerate(answers) if r.status_code == 200]
    limited = [r for r in answers if r.status_code == 429]
    assert len(admitted) + len(limited) == 30
    assert all(r.json()["error"]["code"] == "rate_limit_exceeded" for r in limited)
    assert all(int(r.headers["Retry-After"]) >= 1 for r in limited)
    # One bucket for both: what they admitted together fits in it (plus its refill);
    # a bucket per gateway would have let through twice as much.
    assert len(admitted) * cost <= per_minute + elapsed * per_minute / 60
    assert len(admitted) >= per_minute // cost
    assert {i % 2 for i in admitted} == {0, 1}
    assert redis.Redis.from_url(REDIS).exists(f"{prefix}bucket:{record.id}") == 1


def test_with_redis_down_a_gateway_limits_on_its_own_and_counts_it(
    twins: list[str], make_gateway: MakeGateway, prefix: str
) -> None:
    nobody = f"redis://127.0.0.1:{free_port()}/0"
    gw = make_gateway(text=shared(twins, prefix, redis_url=nobody))
    key = gw.key(tokens_per_minute=210)
    codes = [chat(gw, key, 20).status_code for _ in range(14)]
    assert codes[:10] == [200] * 10 and set(codes[10:]) == {429}
    metrics = httpx.get(gw.url + "/metrics").text
    counted = [
        x for x in metrics.splitlines() if x.startswith("tokenfactory_rate_limit_fallbacks_total")
    ]
    assert counted == ["tokenfactory_rate_limit_fallbacks_total 14.0"]


def test_takes_from_two_gateways_at_once_never_overdraw_a_shared_bucket(prefix: str) -> None:
    per_minute, cost = 100, 10

    async def scenario() -> tuple[list[float], float, int]:
        registries = [CollectorRegistry() for _ in range(2)]
        gateways = [RedisBuckets(REDIS, prefix, r) for r in registries]
        started = time.monotonic()
        waits = await asyncio.gather(
            *(gateways[i % 2].take(7, per_minute, cost) for i in range(40))
        )
        elapsed = time.monotonic() - started
        ttl = await gateways[0].redis.ttl(gateways[0].bucket(7))
        for g, r in zip(gateways, registries, strict=True):
            assert r.get_sample_value("tokenfactory_rate_limit_fallbacks_total") == 0
            await g.close()
        return list(waits), elapsed, ttl

    waits, elapsed, ttl = asyncio.run(scenario())
    admitted = waits.count(0.0)
    # A full bucket holds ten takes; it refills 100 tokens a minute.
    assert 10 <= admitted <= 10 + elapsed * per_minute / 60 / cost
    # A refused take is told how long until its tokens are there: at most a take's worth.
    refused = [w for w in waits if w > 0]
    assert len(refused) == 40 - admitted
    assert all(0 < w <= cost * 60 / per_minute for w in refused)
    # An idle bucket is gone once it would be full again (a missing bucket is a full one).
    assert 0 < ttl <= 61


@pytest.mark.parametrize(
    ("url", "problem"),
    [("http://127.0.0.1:6379", "schemes"), ("redis://127.0.0.1:port/0", "Port")],
)
def test_a_factory_with_a_redis_address_that_is_not_one_is_refused(
    catalog: Catalog, tmp_path: Path, url: str, problem: str
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(
        factory_toml(["http://127.0.0.1:1"]).replace("[server]\n", f'[server]\nredis = "{url}"\n')
    )
    with pytest.raises(ConfigError, match="redis") as refused:
        load_factory(path, catalog)
    assert problem in str(refused.value)


def claimed_by(ledger: Ledger, batch_id: str) -> str | None:
    """The gateway holding the batch's claim."""
    with ledger._read() as session:
        holder: str | None = session.scalars(
            select(BatchRow.claimed_by).where(BatchRow.id == batch_id)
        ).one()
        return holder


def batch_requests(gw: Gateway) -> float:
    """Batch lines this gateway has run (its own metrics)."""
    text = httpx.get(gw.url + "/metrics").text
    return sum(
        float(x.rsplit(" ", 1)[1])
        for x in text.splitlines()
        if x.startswith("tokenfactory_requests_total{") and 'tier="batch"' in x
    )


def test_a_batch_runs_on_one_gateway_and_moves_when_that_one_dies(
    pg_database: str,
    catalog: Catalog,
    make_gateway: MakeGateway,
    prefix: str,
    tmp_path: Path,
) -> None:
    lines = 16
    # Real time: each line of 100 tokens runs for about a second.
    with ExitStack() as stack:
        twins = [stack.enter_context(serving(twin_app(catalog, speedup=1.0))) for _ in range(2)]
        text = shared(twins, prefix, concurrency=2)
        config = tmp_path / "a.toml"
        config.write_text(text)
        port = free_port()
        command = [sys.executable, "-m", "tokenfactory", "serve", "--config", str(config)]
        command += ["--database", pg_database, "--port", str(port)]
        a_process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        try:
            a_url = f"http://127.0.0.1:{port}"
            wait_until(lambda: _answers(a_url), deadline_s=120)
            b = make_gateway(text=text, database=pg_database)
            record, secret = b.ledger.create_key("acme", budget_usd=Decimal(10))
            batch = submit(
                client(a_url, secret),
                jsonl([line(f"q{i}", MODEL, 100, f"question {i}") for i in range(lines)]),
            )
            c = client(b.url, secret)
            wait_for(c, batch.id, lambda x: finished_lines(x) >= 2)
            # Gateway A runs it; B, sweeping every lease/3, has run none of it.
            holder = claimed_by(b.ledger, batch.id)
            assert holder is not None and holder.split(":")[1] == str(a_process.pid)
            assert batch_requests(b) == 0
            os.killpg(a_process.pid, signal.SIGKILL)  # no shutdown: its claim stays
            a_process.wait(timeout=30)
            done = wait_for(c, batch.id, ended)
        finally:
            if a_process.poll() is None:
                os.killpg(a_process.pid, signal.SIGKILL)
                a_process.wait(timeout=30)
    # B took it over after the lease and ran the rest; each line ran and was billed once.
    assert done.status == "completed" and done.request_counts is not None
    assert (done.request_counts.completed, done.request_counts.total) == (lines, lines)
    assert 1 <= batch_requests(b) <= lines - 2
    assert claimed_by(b.ledger, batch.id) is None  # let go once closed
    out = output_lines(c, done.output_file_id)
    assert sorted(o["custom_id"] for o in out) == sorted(f"q{i}" for i in range(lines))
    delivered = delivered_tokens(out)
    assert set(delivered.values()) == {100}
    check_billing(b.ledger, batch.id, record.id, delivered)


def test_a_batch_cancelled_on_another_gateway_stops_where_it_runs(
    pg_database: str, catalog: Catalog, make_gateway: MakeGateway, prefix: str
) -> None:
    lines = 16
    with ExitStack() as stack:
        twins = [stack.enter_context(serving(twin_app(catalog, speedup=1.0))) for _ in range(2)]
        a, b = two(make_gateway, shared(twins, prefix, concurrency=2), pg_database)
        record, secret = a.ledger.create_key("acme", budget_usd=Decimal(10))
        batch = submit(
            client(a.url, secret),
            jsonl([line(f"q{i}", MODEL, 100, f"question {i}") for i in range(lines)]),
        )
        c = client(b.url, secret)
        wait_for(c, batch.id, lambda x: finished_lines(x) >= 1)
        assert c.batches.cancel(batch.id).status == "cancelling"
        # A sees the cancel when it next renews its lease, and stops the batch there.
        done = wait_for(c, batch.id, ended, deadline_s=30)
    assert done.status == "cancelled" and done.request_counts is not None
    assert 1 <= done.request_counts.completed < lines
    assert batch_requests(b) == 0 and batch_requests(a) >= 1
    out = output_lines(c, done.output_file_id)
    assert len(out) == done.request_counts.completed
    check_billing(b.ledger, batch.id, record.id, delivered_tokens(out))


def _answers(url: str) -> bool:
    try:
        return httpx.get(url + "/health", timeout=5).status_code == 200
    except httpx.TransportError:
        return False
