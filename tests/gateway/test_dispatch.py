"""The floor's dispatcher: policy order, placement, giving places back, pausing."""

from __future__ import annotations

import asyncio

import pytest

from tokenfactory.catalog import load_catalog
from tokenfactory.engines.base import Load
from tokenfactory.engines.openai_http import OpenAIEngine
from tokenfactory.gateway.dispatch import Dispatcher, ReplicaSlot
from tokenfactory.perf.efficiency import efficiency_for
from tokenfactory.perf.model import Deployment, PerfModel
from tokenfactory.sched import POLICIES, Job, TierRule

TIERS = {
    "realtime": TierRule("realtime", 0, 2.0, 0.45, 0.04, 5.0, False),
    "standard": TierRule("standard", 1, 1.0, 2.0, 0.2, 30.0, False),
    "flex": TierRule("flex", 2, 0.5, None, None, 900.0, True),
}

_CATALOG = load_catalog()
H100_8B = Deployment(_CATALOG.model("llama-3.1-8b"), _CATALOG.gpu("H100-SXM"), "bf16")


def slot(
    index: int, places: int, resumes: bool = True, usd_per_s: float = 0.0, perf: bool = False
) -> ReplicaSlot:
    # A real adapter that is never started: the dispatcher only asks whether it resumes.
    engine = OpenAIEngine(f"r{index}", "http://127.0.0.1:9", "m", continue_final_message=resumes)
    model = PerfModel(H100_8B, efficiency_for("vllm")) if perf else None
    return ReplicaSlot(index, f"r{index}", engine, places, usd_per_s=usd_per_s, perf=model)


def job(i: int, tier: str, at: float = 0.0) -> Job:
    return Job(i, TIERS[tier], at, 100, 50, 1.0 if tier == "realtime" else 0.1, 1.0)


async def queued(d: Dispatcher, n: int) -> None:
    """Return once `n` requests wait in the dispatcher's queue: their acquires have made
    their choice (a place, a pause) and reached their wait. Bounded in loop turns."""
    for _ in range(100):
        if d.queued >= n:
            return
        await asyncio.sleep(0)  # one loop turn for the acquires to run
    raise AssertionError(f"{d.queued} requests queued, not {n}")


def test_waiting_requests_get_places_in_policy_order_as_places_free() -> None:
    async def scenario() -> list[int]:
        d = Dispatcher([slot(0, 1)], POLICIES["priority"], "least_load", clock=lambda: 0.0)
        first = await d.acquire(job(1, "flex"))
        order: list[int] = []

        async def wait(j: Job) -> None:
            lease = await d.acquire(j)
            order.append(j.id)
            d.release(lease)

        tasks = [
            asyncio.create_task(wait(job(2, "flex", 1.0))),
            asyncio.create_task(wait(job(3, "realtime", 2.0))),
        ]
        await queued(d, 2)  # both queue behind the first
        assert d.queued == 2 and d.queued_by_tier() == {"flex": 1, "realtime": 1}
        d.release(first)
        await asyncio.gather(*tasks)
        return order

    assert asyncio.run(scenario()) == [3, 2]  # realtime came last, went first


def test_a_cancelled_waiter_leaves_the_queue_and_places_are_not_lost() -> None:
    async def scenario() -> None:
        d = Dispatcher([slot(0, 1)], POLICIES["fcfs"], "least_load")
        held = await d.acquire(job(1, "flex"))
        waiter = asyncio.create_task(d.acquire(job(2, "flex")))
        await queued(d, 1)
        waiter.cancel()
        await asyncio.gather(waiter, return_exceptions=True)
        d.release(held)
        again = await asyncio.wait_for(d.acquire(job(3, "flex")), 1)
        assert again.replica.free == 0 and d.queued == 0

    asyncio.run(scenario())


def test_value_pauses_cheap_work_for_paying_work_only_where_it_can_resume() -> None:
    async def scenario() -> None:
        fixed, resumable = slot(0, 1, resumes=False), slot(1, 1, resumes=True)
        d = Dispatcher([fixed, resumable], POLICIES["value"], "least_load")
        a, b = await d.acquire(job(1, "flex")), await d.acquire(job(2, "flex"))
        paying = asyncio.create_task(d.acquire(job(3, "realtime")))
        await queued(d, 1)
        leases = {a.replica.index: a, b.replica.index: b}
        assert leases[1].preempt.is_set() and not leases[0].preempt.is_set()
        d.release(leases[1])  # the paused request gives its place back
        lease = await asyncio.wait_for(paying, 1)
        assert lease.replica is resumable and d.preemptions == 1

    asyncio.run(scenario())


def test_value_pauses_nothing_for_paying_work_that_can_wait_for_a_place() -> None:
    async def scenario() -> None:
        d = Dispatcher([slot(0, 2)], POLICIES["value"], "least_load", clock=lambda: 0.0)
        a, b = await d.acquire(job(1, "flex")), await d.acquire(job(2, "flex"))
        # A place frees in about 1 s of service over 2 running: 0.5 s, inside standard's 2 s.
        assert d.place_wait_s() == 0.5
        paying = asyncio.create_task(d.acquire(job(3, "standard")))
        await queued(d, 1)
        assert not a.preempt.is_set() and not b.preempt.is_set() and d.preemptions == 0
        d.release(a)  # a place frees: the standard request takes it, ahead of any flex
        lease = await asyncio.wait_for(paying, 1)
        assert lease.job.id == 3 and d.preemptions == 0
        d.release(b)
        d.release(lease)

    asyncio.run(scenario())


def test_value_pauses_nothing_whose_recompute_costs_more_than_the_paying_job_loses() -> None:
    """The realtime job (worth 1 $) loses its 0.5 $ premium if it waits the 1 s a place
    takes; the flex job's 125 tokens of context take about 2 ms to recompute."""

    async def scenario(usd_per_s: float) -> bool:
        replica = slot(0, 1, usd_per_s=usd_per_s, perf=True)
        d = Dispatcher([replica], POLICIES["value"], "least_load", clock=lambda: 0.0)
        held = await d.acquire(job(1, "flex"))
        paying = asyncio.create_task(d.acquire(job(2, "realtime")))
        await queued(d, 1)
        paused = held.preempt.is_set()
        d.release(held)
        d.release(await asyncio.wait_for(paying, 1))
        return paused

    assert asyncio.run(scenario(usd_per_s=1.0))  # a pause at 1 $/s costs about 0.002 $
    assert not asyncio.run(scenario(usd_per_s=1000.0))  # about 2 $: more than the premium
    flex = job(1, "flex")
    recompute_s = PerfModel(H100_8B, efficiency_for("vllm")).work_s(flex.paused_context, 0, 0)
    priced = slot(0, 1, usd_per_s=2.0, perf=True).priced(flex)
    assert priced.pause_cost == pytest.approx(2.0 * recompute_s, rel=1e-12)
    assert slot(0, 1, usd_per_s=2.0).priced(flex).pause_cost == 0.0  # no performance model


def test_engine_load_from_elsewhere_steers_routing() -> None:
    quiet, busy = slot(0, 4), slot(1, 4)
    busy.engine_load = Load(running=6, waiting=10, kv_usage=0.9)  # other clients' requests
    assert busy.load().outstanding_tokens > quiet.load().outstanding_tokens

    async def scenario() -> int:
        d = Dispatcher([busy, quiet], POLICIES["fcfs"], "least_load")
        return (await d.acquire(job(1, "flex"))).replica.index

    assert asyncio.run(scenario()) == 0
