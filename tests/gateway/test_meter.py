"""Cost attribution: each request pays its share of the engine steps it ran in, so a busy
replica's requests add up to its busy time and a lone request pays its whole steps."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import openai
import pytest
from floor_helpers import MakeGateway, floors, twin_app
from servers import serving

from tokenfactory.catalog import Catalog
from tokenfactory.engines.openai_http import OpenAIEngine
from tokenfactory.engines.twin import Twin
from tokenfactory.gateway.dispatch import Dispatcher, Lease, ReplicaSlot
from tokenfactory.gateway.meter import step_share_s
from tokenfactory.ledger.records import micros_to_usd, round_usd, usd_to_micros
from tokenfactory.perf.efficiency import efficiency_for
from tokenfactory.perf.model import Batch, Deployment, PerfModel
from tokenfactory.sched import POLICIES, Job, TierRule
from tokenfactory.sim.replica import EngineLimits
from tokenfactory.sim.run import NO_COST, NO_PRICES, UNBOUNDED_TIERS, Setup, simulate
from tokenfactory.workload import OpenLoop, Request

MODEL = "llama-3.1-8b"
ASK = "What does a token cost? " * 10


@contextmanager
def twin_engine(catalog: Catalog, speedup: float) -> Iterator[tuple[str, Twin]]:
    """A twin's URL and the twin itself, whose replica counts its busy model-seconds."""
    app: Any = twin_app(catalog, speedup=speedup)
    with serving(app) as url:
        yield url, app.state.twin


def ask(gw_v1: str, key: str, max_tokens: int) -> None:
    """One chat request, answered in full."""
    client = openai.OpenAI(base_url=gw_v1, api_key=key, max_retries=0, timeout=120)
    client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": ASK}], max_tokens=max_tokens
    )


def test_a_lone_request_pays_its_whole_step_times_at_any_twin_speed(
    catalog: Catalog, make_gateway: MakeGateway, tmp_path: Path
) -> None:
    # Alone on the replica it shares no step: its work is every second of the steps the
    # twin ran for it (the model's seconds, so the same at real time and 20x faster).
    billed: dict[float, int] = {}
    for speedup in (1.0, 20.0):
        with twin_engine(catalog, speedup) as (url, twin):
            gw = make_gateway([url], database=f"sqlite:///{tmp_path / f'lone-{speedup}.db'}")
            ask(gw.v1, gw.key(), 400)
            [event] = gw.ledger.events()
            assert event.output_tokens == 400
            assert event.work_s == pytest.approx(twin.replica.busy_s, rel=1e-9)
            rate = floors[-1].costs["twin-0"].usd_per_s
            assert event.cost_micros == usd_to_micros(round_usd(rate * Decimal(repr(event.work_s))))
            billed[speedup] = event.cost_micros
            if speedup == 1.0:
                # In real time the request held the replica about as long as it is billed.
                wall = (event.ended_at - event.started_at).total_seconds()
                assert event.work_s <= wall < event.work_s + 2.0
    assert billed[1.0] == billed[20.0] > 0


def test_a_busy_replicas_requests_add_up_to_its_busy_time(
    catalog: Catalog, make_gateway: MakeGateway
) -> None:
    # Sixteen requests at once keep a real-time H100 twin busy for about two seconds; each
    # is charged its share of the steps, so together they are charged about the busy time.
    # The dispatcher sees the batch from the gateway's side of the wire: on an idle machine
    # the two agree within a few percent; on a loaded one the requests reach the engine
    # staggered, the engine runs smaller batches for longer, and the gateway, counting
    # as running requests the engine has not started yet, splits each step among more of
    # them, so the work falls short of the busy time (by 24 % in the worst run seen).
    n, tokens = 16, 300
    with twin_engine(catalog, 1.0) as (url, twin):
        gw = make_gateway([url], concurrency=n)
        key = gw.key()
        failures: list[BaseException] = []

        def one() -> None:
            try:
                ask(gw.v1, key, tokens)
            except BaseException as e:  # reported below
                failures.append(e)

        threads = [threading.Thread(target=one) for _ in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert not failures, failures
        busy = twin.replica.busy_s
    events = gw.ledger.events()
    assert len(events) == n and all(e.output_tokens == tokens for e in events)
    work = sum(e.work_s for e in events)
    print(f"{n} requests: work {work:.4f} s, the twin busy {busy:.4f} s")
    assert 0.6 * busy <= work <= 1.1 * busy, (work, busy)

    # In money: the rate times the work, exact in micro-dollars.
    floor = floors[-1]
    rate = floor.costs["twin-0"].usd_per_s
    for e in events:
        assert e.cost_micros == usd_to_micros(round_usd(rate * Decimal(repr(e.work_s))))
    charged = micros_to_usd(sum(e.cost_micros for e in events))
    assert charged == pytest.approx(rate * Decimal(repr(work)), abs=Decimal("0.000001") * n)
    until = max(e.ended_at for e in events) + timedelta(microseconds=1)
    pnl = gw.ledger.pnl(floor.started_at, until, floor.cost_rates())
    assert pnl["cost_usd"] == charged
    # The old rule (each request's marginal work, the weight reads left out) charged a
    # small fraction of this.
    perf = floor.costs["twin-0"].perf
    assert perf is not None
    marginal = sum(perf.work_s(e.input_tokens, e.cached_tokens, e.output_tokens) for e in events)
    assert marginal < 0.5 * busy


def test_requests_in_one_batch_share_its_steps_exactly(catalog: Catalog) -> None:
    # B identical requests run together: one prefill step of their B prompts, then decode
    # steps of B sequences. Their shares add up to exactly those steps, whatever B.
    d = Deployment(catalog.model(MODEL), catalog.gpu("H100-SXM"), "fp8", 1)
    perf = PerfModel(d, efficiency_for("vllm"))
    prompt, out = 500, 200
    for b in (1, 2, 7, 32):
        prefill = perf.step_time(Batch(b * prompt, b * prompt * prompt / 2, 0.0, 0, 0.0, b))
        decode = sum(
            perf.step_time(Batch(0, 0.0, 0.0, b, b * (prompt + k), b)) for k in range(1, out)
        )
        shares = b * step_share_s(perf, prompt, 0, out, float(b))
        assert shares == pytest.approx(prefill + decode, rel=1e-9), b
    # Between whole batches the shared part divides as 1 / batch.
    two, three = (step_share_s(perf, prompt, 0, out, b) for b in (2.0, 3.0))
    between = step_share_s(perf, prompt, 0, out, 2.4)
    assert three < between < two
    assert (two - between) / (two - three) == pytest.approx((1 / 2 - 1 / 2.4) / (1 / 2 - 1 / 3))


def planner_shares(catalog: Catalog, requests: list[Request]) -> dict[int, float]:
    """The planner's cost attribution (replica seconds) of these requests on the twin's
    own deployment (`twin_app`): the share of the steps each was in, by request id."""
    setup = Setup(
        Deployment(catalog.model(MODEL), catalog.gpu("H100-SXM"), "fp8", 1),
        efficiency_for("vllm"),
        EngineLimits(64, 8192),
        1,
        OpenLoop(requests),
        UNBOUNDED_TIERS,
        NO_PRICES,
        NO_COST,
    )
    return {o.req.id: o.share_s for o in simulate(setup).fleet.outcomes}


def test_the_planner_charges_a_batch_as_the_meter_does(catalog: Catalog) -> None:
    # B identical requests start together: the planner splits their prefill step and each
    # decode step evenly among them, which is what the meter charges a request that ran in
    # a batch of B; so do they on a lone request (B = 1). (A one-token request ahead holds
    # the replica for one step, so that all B start at its end: the first to reach an idle
    # replica would step alone.)
    d = Deployment(catalog.model(MODEL), catalog.gpu("H100-SXM"), "fp8", 1)
    perf = PerfModel(d, efficiency_for("vllm"))
    prompt, out = 200, 150
    for b in (1, 2, 7, 32):
        batch = [Request(i, 0.0, prompt, out) for i in range(b)]
        shares = planner_shares(catalog, [Request(b, 0.0, 1, 1), *batch])
        metered = step_share_s(perf, prompt, 0, out, float(b))
        got = {i: shares[i] for i in range(b)}
        assert got == pytest.approx(dict.fromkeys(range(b), metered), rel=1e-9), b


def test_the_planner_and_the_floor_charge_lone_requests_the_same(
    catalog: Catalog, make_gateway: MakeGateway
) -> None:
    # Requests one at a time through the gateway to a twin (20x real time: work is the
    # model's seconds), and the same requests, as the ledger counted their tokens, in the
    # planner: each is charged the same replica seconds in both worlds.
    with twin_engine(catalog, 20.0) as (url, _):
        gw = make_gateway([url])
        key = gw.key()
        for max_tokens in (1, 40, 300):
            ask(gw.v1, key, max_tokens)
        events = sorted(gw.ledger.events(), key=lambda e: e.output_tokens)
    assert [e.output_tokens for e in events] == [1, 40, 300]
    assert all(e.cached_tokens == 0 for e in events)
    apart = [Request(i, 100.0 * i, e.input_tokens, e.output_tokens) for i, e in enumerate(events)]
    shares = planner_shares(catalog, apart)
    assert shares == pytest.approx({i: e.work_s for i, e in enumerate(events)}, rel=1e-9)


def test_the_dispatcher_splits_each_busy_second_among_the_requests_running() -> None:
    # One replica, three requests: a runs 0-4 s, b 1-3 s, c 2-6 s, and 6-8 s it is idle.
    # Each second goes evenly to whoever runs then: a gets 1 + 1/2 + 1/3 + 1/2 seconds,
    # b 1/2 + 1/3, c 1/3 + 1/2 + 2, and together they get the 6 busy seconds, not 8.
    now = [0.0]
    engine = OpenAIEngine("r0", "http://127.0.0.1:9", "m")  # never started
    d = Dispatcher(
        [ReplicaSlot(0, "r0", engine, 3)], POLICIES["fcfs"], "least_load", lambda: now[0]
    )
    tier = TierRule("standard", 1, 1.0, None, None, 60.0, False)

    async def scenario() -> dict[str, float]:
        leases: dict[str, Lease] = {}
        for name, at in (("a", 0.0), ("b", 1.0), ("c", 2.0)):
            now[0] = at
            leases[name] = await d.acquire(Job(ord(name), tier, at, 10, 10, 0.0, 1.0))
        for name, at in (("b", 3.0), ("a", 4.0), ("c", 6.0)):
            now[0] = at
            d.release(leases[name])
        now[0] = 8.0
        return {name: lease.share_s for name, lease in leases.items()}

    shares = asyncio.run(scenario())
    assert shares == pytest.approx({"a": 7 / 3, "b": 5 / 6, "c": 17 / 6})
    assert sum(shares.values()) == pytest.approx(6.0)
