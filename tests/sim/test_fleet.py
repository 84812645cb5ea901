"""The fleet: admission, abandonment, routing of sessions, billing by the tier served,
and what the value policy buys on a saturated replica."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tokenfactory.sched import TierRule
from tokenfactory.sim.fleet import TierPrice
from tokenfactory.sim.replica import EngineLimits
from tokenfactory.sim.run import simulate
from tokenfactory.workload import ChatSessions, Fixed, Ids, Request, TierMix

PRICES = {
    "realtime": TierPrice(2e-6, 1e-6, 8e-6),
    "standard": TierPrice(1e-6, 0.5e-6, 4e-6),
    "flex": TierPrice(0.5e-6, 0.25e-6, 2e-6),
    "batch": TierPrice(0.5e-6, 0.25e-6, 2e-6),
}
ONE_SEQ = EngineLimits(max_num_seqs=1)


def test_a_request_whose_patience_runs_out_is_abandoned_and_earns_nothing(
    make_setup, make_tiers
) -> None:
    reqs = [Request(0, 0.0, 1000, 200), Request(1, 0.01, 100, 50, "realtime")]
    setup = make_setup(reqs, limits=ONE_SEQ, tiers=make_tiers(realtime=0.2), prices=PRICES)
    result = simulate(setup)
    got = {o.req.id: o for o in result.fleet.outcomes}
    assert got[1].status == "abandoned"
    assert got[1].first_token_s is None and got[1].output_tokens == 0
    assert got[1].end_s >= 0.01 + 0.2  # it gave up only after its patience
    s = result.summary
    realtime = s["per_tier"]["realtime"]
    assert realtime["requests"] == 1 and realtime["abandoned"] == 1
    assert realtime["requests_completed"] == 0 and realtime["revenue_usd"] == 0.0
    assert realtime["slo_attainment"] == 0.0
    assert s["requests"] == 2 and s["requests_completed"] == 1
    assert s["revenue_usd"] == pytest.approx(1000 * 1e-6 + 200 * 4e-6, rel=1e-12)
    # With patience to spare it is served, after the first request.
    result = simulate(make_setup(reqs, limits=ONE_SEQ, prices=PRICES))
    assert [o.status for o in result.fleet.outcomes] == ["ok", "ok"]


def test_value_refuses_flex_that_would_wait_past_its_patience(make_setup, make_tiers) -> None:
    # One place: request 1 waits behind request 0, so a flex arrival expects a wait of about
    # one mean service time (1 s before any request has ended), more than its 0.5 s.
    reqs = [
        Request(0, 0.0, 1000, 200),
        Request(1, 0.001, 100, 10),
        Request(2, 0.002, 100, 10, "flex"),
        Request(3, 0.003, 100, 10, "realtime"),
    ]
    tiers = make_tiers(flex=0.5, realtime=100.0)
    value = simulate(make_setup(reqs, limits=ONE_SEQ, tiers=tiers, policy="value"))
    status = {o.req.id: o.status for o in value.fleet.outcomes}
    assert status == {0: "ok", 1: "ok", 2: "refused", 3: "ok"}
    refused = next(o for o in value.fleet.outcomes if o.req.id == 2)
    assert refused.end_s == 0.002  # at the door
    assert value.summary["per_tier"]["flex"]["refused"] == 1
    fcfs = simulate(make_setup(reqs, limits=ONE_SEQ, tiers=make_tiers(), policy="fcfs"))
    assert all(o.status == "ok" for o in fcfs.fleet.outcomes)


def test_a_realtime_request_that_missed_its_ttft_is_billed_at_standard(make_setup, perf) -> None:
    tiers = {
        "realtime": TierRule("realtime", 0, 2.0, 0.5, None, math.inf, False),
        "standard": TierRule("standard", 1, 1.0, None, None, math.inf, False),
        "flex": TierRule("flex", 2, 0.5, None, None, math.inf, True),
        "batch": TierRule("batch", 3, 0.5, None, None, math.inf, True),
    }
    # The second waits for the first (one place): about 2 s, far past its 0.5 s objective.
    reqs = [Request(0, 0.0, 1000, 200, "realtime"), Request(1, 0.0, 500, 100, "realtime")]
    result = simulate(make_setup(reqs, limits=ONE_SEQ, tiers=tiers, prices=PRICES))
    got = {o.req.id: o for o in result.fleet.outcomes}
    assert got[0].first_token_s < 0.5 < got[1].first_token_s
    paid_realtime = 1000 * 2e-6 + 200 * 8e-6
    paid_standard = 500 * 1e-6 + 100 * 4e-6
    realtime = result.summary["per_tier"]["realtime"]
    assert realtime["revenue_usd"] == pytest.approx(paid_realtime + paid_standard, rel=1e-12)
    assert realtime["slo_attainment"] == 0.5
    duration = result.summary["duration_s"]
    assert duration == got[1].end_s
    assert realtime["goodput_tokens_per_s"] == pytest.approx(200 / duration, rel=1e-12)


def chats(sessions: int) -> ChatSessions:
    rng = np.random.default_rng(0)
    return ChatSessions(
        sessions, None, Fixed(2), Fixed(1), 500, Fixed(100), Fixed(50), TierMix(), rng, Ids()
    )


def test_prefix_affinity_keeps_a_session_where_its_context_is_cached(make_setup) -> None:
    def turns(router: str) -> list[tuple[int, int]]:
        result = simulate(make_setup(chats(1), replicas=2, router=router))
        return [(o.replica, o.cached_tokens) for o in result.fleet.outcomes]

    history = 600 + 50  # turn 1's prompt and answer
    assert turns("prefix_affinity") == [(0, 0), (0, history)]
    # Round robin sends the second turn to the other replica, where nothing is cached.
    assert turns("round_robin") == [(0, 0), (1, 0)]


def test_value_serves_realtime_first_and_paused_flex_still_completes(
    make_setup, make_tiers
) -> None:
    flex = [Request(i, 0.0, 200, 400, "flex") for i in range(16)]
    realtime = [Request(100 + i, 0.05 + 0.25 * i, 200, 20, "realtime") for i in range(8)]
    limits = EngineLimits(max_num_seqs=8)
    # Realtime's first token is due within 0.1 s: waiting for a flex request to end misses.
    tiers = {**make_tiers(), "realtime": TierRule("realtime", 0, 2.0, 0.1, None, math.inf, False)}

    def run(policy: str) -> tuple[list[float], int, list[int]]:
        setup = make_setup(flex + realtime, limits=limits, tiers=tiers, policy=policy)
        result = simulate(setup)
        outcomes = result.fleet.outcomes
        assert len(outcomes) == 24 and all(o.status == "ok" for o in outcomes)
        ttft = [o.first_token_s - o.req.arrival_s for o in outcomes if o.req.tier == "realtime"]
        flex_out = [o.output_tokens for o in outcomes if o.req.tier == "flex"]
        return ttft, result.summary["preemptions"], flex_out

    fcfs_ttft, fcfs_preempted, _ = run("fcfs")
    value_ttft, value_preempted, flex_out = run("value")
    assert fcfs_preempted == 0
    assert value_preempted > 0
    assert flex_out == [400] * 16  # paused by recompute, none lost a token
    assert max(value_ttft) < 0.1 < min(fcfs_ttft)  # fcfs makes realtime wait for the flex
    assert np.mean(value_ttft) < np.mean(fcfs_ttft) / 10


def test_value_pauses_nothing_for_paying_work_that_can_wait_for_a_place(make_setup) -> None:
    """A pause costs the paused request's recompute: with a relaxed objective (none here,
    so endless), paying work waits for the next place instead, still ahead of queued flex."""
    flex = [Request(i, 0.0, 200, 400, "flex") for i in range(16)]
    standard = [Request(100 + i, 0.05 + 0.25 * i, 200, 20) for i in range(8)]
    limits = EngineLimits(max_num_seqs=8)

    def run(policy: str) -> tuple[int, float, list[float]]:
        result = simulate(make_setup(flex + standard, limits=limits, policy=policy))
        outcomes = result.fleet.outcomes
        assert len(outcomes) == 24 and all(o.status == "ok" for o in outcomes)
        flex_end = max(o.end_s for o in outcomes if o.req.tier == "flex")
        firsts = [o.first_token_s for o in outcomes if o.req.tier == "standard"]
        return result.summary["preemptions"], flex_end, firsts

    preempted, flex_end, firsts = run("value")
    assert preempted == 0
    assert max(firsts) < flex_end  # each took a place before the queued flex did
    _, fcfs_flex_end, fcfs_firsts = run("fcfs")
    assert max(fcfs_firsts) >= fcfs_flex_end  # fcfs served the queued flex first


def test_least_load_sends_a_session_back_to_its_cached_prefix_when_that_is_least_work(
    make_setup,
) -> None:
    # Turn 1 (3000 prompt tokens) is cached on replica 0; a plain request then queues there.
    # Turn 2 would prefill 3010 tokens on the idle replica 1 but only 90 on replica 0.
    reqs = [
        Request(0, 0.0, 3000, 10, session=7),
        Request(1, 1.0, 1000, 500),
        Request(2, 1.001, 3100, 10, session=7, prefix_tokens=3010),
    ]
    got = {o.req.id: o for o in simulate(make_setup(reqs, replicas=2)).fleet.outcomes}
    assert got[0].end_s < 1.0 and got[1].replica == 0
    assert got[2].replica == 0 and got[2].cached_tokens == 3010
