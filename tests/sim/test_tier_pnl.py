"""Cost by tier: each tier pays its requests' share of the steps at the fleet's rate; the
rest is idle."""

from __future__ import annotations

import math

import pytest

from tokenfactory.sched import TierRule
from tokenfactory.sim.fleet import Outcome, TierPrice
from tokenfactory.sim.replica import EngineLimits
from tokenfactory.sim.report import Economics, summarize
from tokenfactory.sim.run import simulate
from tokenfactory.sim.tier_pnl import with_tier_costs
from tokenfactory.workload import Request

TIERS = {
    name: TierRule(name, rank, 1.0, None, None, math.inf, False)
    for rank, name in enumerate(("realtime", "standard", "flex", "batch"))
}
PRICES = {name: TierPrice(1e-6, 0.5e-6, 4e-6) for name in TIERS}
ECON = Economics(2, 0.01, 0.0, 1.0, 1.0, 2.0)  # $0.01/s whatever the load


def outcome(i: int, tier: str, status: str, end: float, share: float) -> Outcome:
    served = status == "ok"
    first = end / 2 if served else None
    out = 10 if served else 0
    return Outcome(Request(i, 0.0, 100, 10, tier), status, 0, end, first, 0, out, 0, share)


def costed(outcomes: list[Outcome], replicas: int) -> dict:
    return with_tier_costs(summarize(outcomes, TIERS, PRICES, ECON, 1.0), outcomes, replicas)


def test_each_tier_pays_its_share_and_idle_time_is_reported_apart() -> None:
    outcomes = [
        outcome(0, "realtime", "ok", 10.0, 3.0),
        outcome(1, "standard", "ok", 8.0, 5.0),
        outcome(2, "standard", "abandoned", 4.0, 2.0),  # the steps it was in are still cost
        outcome(3, "flex", "refused", 0.0, 0.0),
    ]
    s = costed(outcomes, replicas=2)
    rate = 0.01 * 10.0 / (10.0 * 2)  # the fleet's cost per replica-second
    tiers = s["per_tier"]
    assert tiers["realtime"]["cost_usd"] == pytest.approx(3.0 * rate, rel=1e-12)
    assert tiers["standard"]["cost_usd"] == pytest.approx(7.0 * rate, rel=1e-12)
    assert tiers["flex"]["cost_usd"] == 0.0
    assert s["idle_cost_usd"] == pytest.approx((20.0 - 10.0) * rate, rel=1e-12)
    for t in tiers.values():
        assert t["profit_usd"] == pytest.approx(t["revenue_usd"] - t["cost_usd"], rel=1e-12)
    total = sum(t["profit_usd"] for t in tiers.values()) - s["idle_cost_usd"]
    assert total == pytest.approx(s["profit_usd"], rel=1e-12)


def test_a_simulated_fleets_attributed_and_idle_costs_add_up_to_its_cost(make_setup) -> None:
    # Two replicas at $0.01/s, requests dealt in turn: on replica 0 a flex request is
    # abandoned after some of its prompt chunks ran (as in test_replica), and pays for
    # them; idle is exactly the replica time in no step.
    reqs = [Request(0, 0.0, 400, 2000), Request(1, 0.001, 2700, 10, "flex")]
    reqs += [Request(2 + i, 0.0005 + 0.5 * i, 300, 50, "realtime") for i in range(6)]
    tiers = {**TIERS, "flex": TierRule("flex", 2, 1.0, None, None, 0.1, True)}
    setup = make_setup(
        reqs,
        kv_tokens=3000,
        limits=EngineLimits(max_batched_tokens=512),
        tiers=tiers,
        prices=PRICES,
        economics=ECON,
        replicas=2,
        router="round_robin",
    )
    result = simulate(setup)
    s = with_tier_costs(result.summary, result.fleet.outcomes, 2)
    rate = s["cost_usd"] / (s["duration_s"] * 2)
    assert rate == pytest.approx(0.005, rel=1e-12)
    [abandoned] = [o for o in result.fleet.outcomes if o.status != "ok"]
    assert abandoned.req.tier == "flex" and abandoned.share_s > 0
    flex = s["per_tier"]["flex"]
    assert flex["revenue_usd"] == 0 and flex["cost_usd"] == pytest.approx(rate * abandoned.share_s)
    assert flex["profit_usd"] == -flex["cost_usd"] < 0
    attributed = sum(t["cost_usd"] for t in s["per_tier"].values())
    assert attributed + s["idle_cost_usd"] == pytest.approx(s["cost_usd"], rel=1e-12)
    busy = sum(r.busy_s for r in result.fleet.replicas)
    assert s["idle_cost_usd"] == pytest.approx(rate * (2 * s["duration_s"] - busy), rel=1e-9)
    assert 0 < s["idle_cost_usd"] < s["cost_usd"]


def test_the_summary_is_left_as_it_was() -> None:
    outcomes = [outcome(0, "standard", "ok", 10.0, 3.0)]
    plain = summarize(outcomes, TIERS, PRICES, ECON, 1.0)
    before = repr(plain)
    costed_ = with_tier_costs(plain, outcomes, 1)
    assert repr(plain) == before and "idle_cost_usd" not in plain
    assert {k: v for k, v in costed_.items() if k not in {"per_tier", "idle_cost_usd"}} == {
        k: v for k, v in plain.items() if k != "per_tier"
    }
