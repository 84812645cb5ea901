"""Cost by tier: each tier pays its requests' work at the fleet's rate; the rest is idle."""

from __future__ import annotations

import math

import pytest

from tokenfactory.sched import TierRule
from tokenfactory.sim.fleet import Outcome, TierPrice
from tokenfactory.sim.report import Economics, summarize
from tokenfactory.sim.tier_pnl import with_tier_costs
from tokenfactory.workload import Request

TIERS = {
    name: TierRule(name, rank, 1.0, None, None, math.inf, False)
    for rank, name in enumerate(("realtime", "standard", "flex", "batch"))
}
PRICES = {name: TierPrice(1e-6, 0.5e-6, 4e-6) for name in TIERS}
ECON = Economics(2, 0.01, 0.0, 1.0, 1.0, 2.0)  # $0.01/s whatever the load


def outcome(i: int, tier: str, status: str, end: float, work: float) -> Outcome:
    served = status == "ok"
    first = end / 2 if served else None
    out = 10 if served else 0
    return Outcome(Request(i, 0.0, 100, 10, tier), status, 0, end, first, 0, out, 0, work)


def costed(outcomes: list[Outcome], replicas: int) -> dict:
    return with_tier_costs(summarize(outcomes, TIERS, PRICES, ECON, 1.0), outcomes, replicas)


def test_each_tier_pays_its_work_and_idle_time_is_reported_apart() -> None:
    outcomes = [
        outcome(0, "realtime", "ok", 10.0, 3.0),
        outcome(1, "standard", "ok", 8.0, 5.0),
        outcome(2, "standard", "abandoned", 4.0, 2.0),  # work spent on it is still cost
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


def test_work_beyond_the_replica_time_is_scaled_to_the_whole_cost() -> None:
    outcomes = [outcome(0, "realtime", "ok", 10.0, 30.0), outcome(1, "flex", "ok", 10.0, 10.0)]
    s = costed(outcomes, replicas=1)
    assert s["idle_cost_usd"] == pytest.approx(0.0, abs=1e-15)
    assert s["per_tier"]["realtime"]["cost_usd"] == pytest.approx(0.75 * s["cost_usd"])
    assert s["per_tier"]["flex"]["cost_usd"] == pytest.approx(0.25 * s["cost_usd"])


def test_the_summary_is_left_as_it_was() -> None:
    outcomes = [outcome(0, "standard", "ok", 10.0, 3.0)]
    plain = summarize(outcomes, TIERS, PRICES, ECON, 1.0)
    before = repr(plain)
    costed_ = with_tier_costs(plain, outcomes, 1)
    assert repr(plain) == before and "idle_cost_usd" not in plain
    assert {k: v for k, v in costed_.items() if k not in {"per_tier", "idle_cost_usd"}} == {
        k: v for k, v in plain.items() if k != "per_tier"
    }
