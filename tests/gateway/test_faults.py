"""Engine faults on the floor: engines that hang, stall, answer 500 or garbage, or are
killed. A request not yet streaming is retried once elsewhere and billed once; one that
has started ends in a clean error and pays for what it got; the replica is taken out and
probed back."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import time
from collections.abc import AsyncGenerator, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from fault_servers import AFTER, BEFORE, FaultyEngine, TwinProcess
from floor_helpers import ADMIN, Gateway, MakeGateway, floors
from servers import free_port, serving

from tokenfactory.config.factory import FactoryFile, QueueLimitsSpec, ReplicaSpec, ServerSpec
from tokenfactory.config.load import load_model_text
from tokenfactory.engines.base import Delta, EngineError, Usage
from tokenfactory.gateway.faults import Timeouts, guarded

MAX_TOKENS = 12
# First-token and stall timeouts: far above what a healthy twin needs on a busy machine.
TIMEOUT_S = 1.0


def factory(urls: list[str], probe_s: float = 60.0, first_token_s: float = TIMEOUT_S) -> str:
    """Twin-speaking replicas with short timeouts; `probe_s` paces the health probe."""
    out = [f'[server]\nadmin_key = "{ADMIN}"\nhealth_probe_s = {probe_s}\n']
    for i, url in enumerate(urls):
        out.append(
            f'[[replicas]]\nname = "r{i}"\nengine = "twin"\nurl = "{url}"\n'
            'model = "llama-3.1-8b"\ngpu = "H100-SXM"\nprecision = "fp8"\n'
            f"max_concurrency = 4\nfirst_token_timeout_s = {first_token_s}\n"
            f"stall_timeout_s = {TIMEOUT_S}\nconnect_timeout_s = 1\n"
        )
    return "\n".join(out)


def chat(
    gw: Gateway, key: str, stream: bool = False, max_tokens: int = MAX_TOKENS
) -> dict[str, Any]:
    """One chat request; for a stream, its text pieces, id and error event if any."""
    body = {
        "model": "llama-3.1-8b",
        "messages": [{"role": "user", "content": "hello"}],
        "max_tokens": max_tokens,
        "stream": stream,
    }
    headers = {"Authorization": f"Bearer {key}"}
    if not stream:
        r = httpx.post(gw.v1 + "/chat/completions", json=body, headers=headers, timeout=30)
        return {"status": r.status_code, "body": r.json()}
    pieces, rid, error = 0, "", None
    with httpx.stream(
        "POST", gw.v1 + "/chat/completions", json=body, headers=headers, timeout=30
    ) as r:
        for line in r.iter_lines():
            if not line.startswith("data: {"):
                continue
            event = json.loads(line[6:])
            if "error" in event:
                error = event["error"]
                break
            rid = event["id"]
            if event["choices"] and event["choices"][0]["delta"].get("content"):
                pieces += 1
    return {"status": r.status_code, "pieces": pieces, "id": rid, "error": error}


def healthy(gw: Gateway, replica: str) -> float:
    """The replica's tokenfactory_replica_healthy gauge."""
    for line in httpx.get(gw.url + "/metrics", timeout=10).text.splitlines():
        if line.startswith(f'tokenfactory_replica_healthy{{replica="{replica}"}}'):
            return float(line.split()[-1])
    raise AssertionError(f"no health gauge for {replica}")


def wait_healthy(gw: Gateway, replica: str, value: float, deadline_s: float = 30.0) -> None:
    """Poll the gauge until it reads `value`, with a deadline."""
    limit = time.monotonic() + deadline_s
    while healthy(gw, replica) != value:
        assert time.monotonic() < limit, f"{replica} never became healthy={value}"
        time.sleep(0.05)  # polling the gateway's metrics, with a deadline


def wait_idle(deadline_s: float = 30.0) -> None:
    """Wait until the probe has seen every replica idle, so that an idle floor routes the
    next request to the first replica (least load, ties to the lowest index)."""
    limit = time.monotonic() + deadline_s
    while any(
        r.engine_load is not None and r.engine_load.running + r.engine_load.waiting
        for r in floors[-1].dispatcher.replicas
    ):
        assert time.monotonic() < limit, "the replicas never looked idle"
        time.sleep(0.05)  # polling the probe's view, with a deadline


def wait_event(gw: Gateway, rid: str, deadline_s: float = 30.0) -> None:
    """Poll the ledger until the request's event is written (the stream's end writes it)."""
    limit = time.monotonic() + deadline_s
    while gw.ledger.event(rid) is None:
        assert time.monotonic() < limit, f"no ledger event for {rid}"
        time.sleep(0.01)  # polling the ledger, with a deadline


def assert_openai_error(error: object) -> None:
    assert isinstance(error, dict) and set(error) == {"message", "type", "param", "code"}
    assert error["message"] and error["code"] == "engine_unavailable"


@pytest.fixture
def faulty_then_twin(twin: str) -> Iterator[tuple[FaultyEngine, list[str]]]:
    """A misbehaving engine first (the router's first pick when idle), a twin second."""
    engine = FaultyEngine("hang")
    with serving(engine) as url:
        yield engine, [url, twin]


@pytest.mark.parametrize("fault", BEFORE)
@pytest.mark.parametrize("stream", [False, True])
def test_a_request_that_has_not_started_is_retried_once_on_another_replica(
    fault: str,
    stream: bool,
    faulty_then_twin: tuple[FaultyEngine, list[str]],
    make_gateway: MakeGateway,
) -> None:
    engine, urls = faulty_then_twin
    engine.fault = fault
    gw = make_gateway(text=factory(urls))
    key = gw.key(budget_usd=Decimal("1"))
    answer = chat(gw, key, stream=stream)
    assert answer["status"] == 200
    if stream:
        assert answer["error"] is None and answer["pieces"] == MAX_TOKENS
        rid = answer["id"]
        wait_event(gw, rid)
    else:
        assert answer["body"]["usage"]["completion_tokens"] == MAX_TOKENS
        rid = answer["body"]["id"]
    assert engine.generations == 1  # tried there once, not again
    events = gw.ledger.events()
    assert [e.request_id for e in events] == [rid]  # one event: billed once
    event = events[0]
    assert event.replica == "r1" and event.outcome == "ok"
    assert event.output_tokens == MAX_TOKENS
    assert event.error is not None and "retried" in event.error and "r0" in event.error
    record = gw.ledger.find_key(key)
    assert record is not None and record.spent_micros == event.revenue_micros > 0
    assert healthy(gw, "r0") == 0 and healthy(gw, "r1") == 1
    metrics = httpx.get(gw.url + "/metrics", timeout=10).text
    assert 'tokenfactory_retries_total{tier="standard"} 1.0' in metrics
    if fault == "hang":  # the wait on the hung engine counts as queueing, not service
        # The timeout fires by uvloop's clock (libuv's: whole milliseconds, read once a
        # turn), the wait is measured by time.monotonic: they may differ by a millisecond.
        assert event.queued_s >= TIMEOUT_S - 0.005


@pytest.mark.parametrize("fault", AFTER)
def test_a_fault_after_streaming_started_is_a_clean_error_billed_for_what_arrived(
    fault: str, faulty_then_twin: tuple[FaultyEngine, list[str]], make_gateway: MakeGateway
) -> None:
    engine, urls = faulty_then_twin
    engine.fault, engine.tokens = fault, 3
    gw = make_gateway(text=factory(urls))
    key = gw.key(budget_usd=Decimal("1"))
    answer = chat(gw, key, stream=True)
    assert answer["status"] == 200 and answer["pieces"] == 3
    assert_openai_error(answer["error"])
    wait_event(gw, answer["id"])
    events = gw.ledger.events()
    assert len(events) == 1 and engine.generations == 1  # no retry
    event = events[0]
    assert event.replica == "r0" and event.outcome == "engine_error"
    assert event.output_tokens == 3  # exactly what the client received
    record = gw.ledger.find_key(key)
    assert record is not None and record.spent_micros == event.revenue_micros > 0
    assert healthy(gw, "r0") == 0
    after = chat(gw, key)  # traffic moves on to the healthy replica
    assert after["status"] == 200
    moved = gw.ledger.event(after["body"]["id"])
    assert moved is not None and moved.replica == "r1"


@pytest.mark.parametrize("fault", AFTER)
def test_a_whole_response_that_fails_midway_starts_again_elsewhere_billed_once(
    fault: str, faulty_then_twin: tuple[FaultyEngine, list[str]], make_gateway: MakeGateway
) -> None:
    engine, urls = faulty_then_twin
    engine.fault, engine.tokens = fault, 3
    gw = make_gateway(text=factory(urls))
    key = gw.key(budget_usd=Decimal("1"))
    answer = chat(gw, key)  # not streamed: the client has received nothing yet
    assert answer["status"] == 200
    assert answer["body"]["usage"]["completion_tokens"] == MAX_TOKENS
    assert not answer["body"]["choices"][0]["message"]["content"].startswith("w0 ")
    (event,) = gw.ledger.events()
    assert event.replica == "r1" and event.outcome == "ok" and engine.generations == 1
    assert event.output_tokens == MAX_TOKENS  # the 3 thrown-away tokens cost it nothing
    record = gw.ledger.find_key(key)
    assert record is not None and record.spent_micros == event.revenue_micros


def test_a_whole_response_that_fails_midway_with_nowhere_else_is_a_503_and_free(
    make_gateway: MakeGateway,
) -> None:
    engine = FaultyEngine("stall", tokens=3)
    with serving(engine) as url:
        gw = make_gateway(text=factory([url]))
        key = gw.key(budget_usd=Decimal("1"))
        answer = chat(gw, key)
        assert answer["status"] == 503
        assert_openai_error(answer["body"]["error"])
        (event,) = gw.ledger.events()
        assert event.outcome == "engine_error" and event.output_tokens == 0
        assert event.revenue_micros == 0  # the client got none of the text
        record = gw.ledger.find_key(key)
        assert record is not None and record.spent_micros == 0  # the reservation came back


def test_with_no_other_replica_the_fault_is_a_clean_503_and_the_service_stays_up(
    make_gateway: MakeGateway,
) -> None:
    engine = FaultyEngine("http_500")
    with serving(engine) as url:
        gw = make_gateway(text=factory([url]))
        key = gw.key()
        answer = chat(gw, key)
        assert answer["status"] == 503
        assert_openai_error(answer["body"]["error"])
        assert "CUDA error" in answer["body"]["error"]["message"]
        assert engine.generations == 1
        (event,) = gw.ledger.events()
        assert event.output_tokens == 0 and event.revenue_micros == 0
        health = httpx.get(gw.url + "/health", timeout=10)
        assert health.status_code == 503 and health.json()["error"]["message"]
        pnl = httpx.get(
            gw.v1 + "/factory/pnl", headers={"Authorization": f"Bearer {ADMIN}"}, timeout=10
        )
        assert pnl.status_code == 200


def test_an_engine_that_stops_accepting_connections_times_out_on_connect(
    twin: str, make_gateway: MakeGateway
) -> None:
    port = free_port()
    with serving(FaultyEngine("http_500"), port=port) as url:
        # It answered its health check; a long first-token timeout leaves connecting to
        # its own timeout.
        gw = make_gateway(text=factory([url, twin], first_token_s=10))
    # Now its port listens but never accepts: once the one-place backlog is taken, a
    # connection attempt hangs (the kernel drops the handshake), as a wedged host does.
    with socket.socket() as wedged, socket.socket() as taken:
        wedged.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        wedged.bind(("127.0.0.1", port))
        wedged.listen(0)
        taken.connect(("127.0.0.1", port))
        answer = chat(gw, gw.key())
    assert answer["status"] == 200
    event = gw.ledger.event(answer["body"]["id"])
    assert event is not None and event.replica == "r1" and event.output_tokens == MAX_TOKENS
    assert event.error is not None and "ConnectTimeout" in event.error
    assert event.queued_s >= 1.0  # the configured connect_timeout_s, spent waiting
    assert healthy(gw, "r0") == 0


def test_a_killed_engine_is_taken_out_and_probed_back_when_it_returns(
    twin: str, make_gateway: MakeGateway
) -> None:
    killed = TwinProcess(free_port())
    killed.start()
    try:
        gw = make_gateway(text=factory([killed.url, twin], probe_s=0.1, first_token_s=10))
        key = gw.key()

        # Killed while idle: the request finds no one there and runs on the other replica.
        killed.kill()
        first = chat(gw, key)
        assert first["status"] == 200
        event = gw.ledger.event(first["body"]["id"])
        assert event is not None and event.replica == "r1" and "r0" in (event.error or "")
        assert healthy(gw, "r0") == 0

        # Back on its port: the probe puts it back and it serves again.
        killed.start()
        wait_healthy(gw, "r0", 1)
        wait_idle()
        second = chat(gw, key)
        event = gw.ledger.event(second["body"]["id"])
        assert event is not None and event.replica == "r0" and event.error is None

        # Killed mid-stream: the client gets what was sent and an error, and pays for that.
        body = {
            "model": "llama-3.1-8b",
            "messages": [{"role": "user", "content": "go on"}],
            "max_tokens": 4000,
            "stream": True,
        }
        pieces, rid, error = 0, "", None
        wait_idle()
        with httpx.stream(
            "POST",
            gw.v1 + "/chat/completions",
            json=body,
            headers={"Authorization": f"Bearer {key}"},
            timeout=30,
        ) as r:
            for line in r.iter_lines():
                if not line.startswith("data: {"):
                    continue
                chunk = json.loads(line[6:])
                if "error" in chunk:
                    error = chunk["error"]
                    break
                rid = chunk["id"]
                if chunk["choices"][0]["delta"].get("content"):
                    pieces += 1
                    if pieces == 5:
                        killed.kill()
        assert_openai_error(error)
        wait_event(gw, rid)
        event = gw.ledger.event(rid)
        assert event is not None and event.replica == "r0" and event.outcome == "engine_error"
        assert event.output_tokens == pieces and 5 <= pieces < 4000
        assert healthy(gw, "r0") == 0

        killed.start()
        wait_healthy(gw, "r0", 1)
        wait_idle()
        third = chat(gw, key)
        event = gw.ledger.event(third["body"]["id"])
        assert event is not None and event.replica == "r0" and event.output_tokens == MAX_TOKENS
        assert len(gw.ledger.events()) == 4  # one event per request, none lost
    finally:
        if killed.process is not None and killed.process.poll() is None:
            killed.kill()


def test_the_documented_fault_and_queue_settings_are_the_defaults() -> None:
    doc = (Path(__file__).parents[2] / "docs" / "factory.md").read_text()
    block = re.search(r"```toml\n(.*?)```", doc, re.S)
    assert block is not None
    documented = load_model_text(block.group(1), "factory.md", FactoryFile)[0]
    replica = documented.replicas[0]
    for name in ("connect_timeout_s", "first_token_timeout_s", "stall_timeout_s"):
        assert getattr(replica, name) == ReplicaSpec.model_fields[name].default, name
    assert documented.server.health_probe_s == ServerSpec().health_probe_s
    assert documented.scheduler.queue_limits == QueueLimitsSpec()
    for heading in ("## Engine faults", "## Overload: queue limits"):
        assert heading in doc


async def _tokens(gaps: list[float], closed: list[bool]) -> AsyncGenerator[Delta | Usage, None]:
    """An engine stream: a token after each gap, then the finish; notes being closed."""
    try:
        for gap in gaps:
            await asyncio.sleep(gap)  # the engine's own pace, the thing under test
            yield Delta(("w ",))
        yield Delta((), "stop")
    finally:
        closed.append(True)


async def _guard(gaps: list[float], first_s: float, stall_s: float, pause_s: float = 0.0) -> int:
    """Run a guarded stream, the consumer taking `pause_s` per token; tokens it got."""
    closed: list[bool] = []
    got = 0
    try:
        async for _ in guarded("e", _tokens(gaps, closed), Timeouts(first_s, stall_s)):
            got += 1
            await asyncio.sleep(pause_s)  # a slow client: not the engine's time
    finally:
        assert closed == [True]  # the engine's stream is closed whatever happened
    return got


def test_guarded_fails_an_overdue_first_or_next_token_as_an_engine_fault() -> None:
    with pytest.raises(EngineError, match=r"no first token within 0\.1s") as caught:
        asyncio.run(_guard([5.0], first_s=0.1, stall_s=10))
    assert not caught.value.started and caught.value.status is None
    with pytest.raises(EngineError, match=r"no next token within 0\.1s") as caught:
        asyncio.run(_guard([0.0, 0.0, 5.0], first_s=10, stall_s=0.1))
    assert caught.value.started


def test_guarded_counts_only_the_engine_s_time_not_the_consumer_s() -> None:
    assert asyncio.run(_guard([0.0, 0.0, 0.0], first_s=0.2, stall_s=0.2, pause_s=0.4)) == 4


def test_guarded_lets_a_cancellation_from_elsewhere_through() -> None:
    async def cancelled() -> None:
        task = asyncio.create_task(_guard([5.0], first_s=0.2, stall_s=0.2))
        await asyncio.sleep(0.05)  # the stream is waiting for its first token
        task.cancel()
        with pytest.raises(asyncio.CancelledError):  # not taken for an overdue token
            await task

    asyncio.run(cancelled())
