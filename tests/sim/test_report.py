"""The summary of a run, from hand-made outcomes: money, service levels, cost and power."""

from __future__ import annotations

import math

import pytest

from tokenfactory.sched import TierRule
from tokenfactory.sim.fleet import Outcome, TierPrice
from tokenfactory.sim.report import Economics, summarize
from tokenfactory.workload import Request

TIERS = {
    "realtime": TierRule("realtime", 0, 2.0, 0.5, 0.05, 5.0, False),
    "standard": TierRule("standard", 1, 1.0, 2.0, None, 30.0, False),
    "flex": TierRule("flex", 2, 0.5, None, None, 900.0, True),
    "batch": TierRule("batch", 3, 0.5, None, None, math.inf, True, 100.0),
}
PRICES = {
    "realtime": TierPrice(2e-6, 1e-6, 8e-6),
    "standard": TierPrice(1e-6, 0.5e-6, 4e-6),
    "flex": TierPrice(0.5e-6, 0.25e-6, 2e-6),
    "batch": TierPrice(0.5e-6, 0.25e-6, 2e-6),
}
ECON = Economics(
    gpus=2,
    cost_per_s_fixed=0.01,
    energy_cost_per_kwh=0.1,
    idle_kw=1.0,
    busy_kw=3.0,
    provisioned_kw=4.0,
)


def served(
    i: int, tier: str, arrival: float, first: float, end: float, out: int, inp: int = 100
) -> Outcome:
    return Outcome(Request(i, arrival, inp, out, tier), "ok", 0, end, first, 0, out)


OUTCOMES = [
    # realtime: met (TTFT 0.2 s, TPOT 40 ms), 40 of its 100 input tokens cached
    Outcome(Request(0, 0.0, 100, 11, "realtime"), "ok", 0, 0.6, 0.2, 40, 11),
    served(1, "realtime", 0.0, 1.0, 1.4, 11),  # TTFT 1 s > 0.5 s: missed
    served(2, "realtime", 0.0, 0.1, 0.7, 11),  # TPOT 60 ms > 50 ms: missed
    served(3, "standard", 1.0, 2.0, 4.0, 21, inp=200),  # met
    Outcome(Request(4, 0.0, 300, 50, "standard"), "abandoned", 0, 30.0),
    Outcome(Request(5, 0.0, 300, 50, "flex"), "refused", 0, 0.0),
    served(6, "batch", 0.0, 5.0, 150.0, 3),  # done past its 100 s window: missed
]


def summary(busy_share: float = 0.5) -> dict:
    return summarize(OUTCOMES, TIERS, PRICES, ECON, busy_share)


def test_revenue_bills_the_tier_served() -> None:
    s = summary()
    rt = s["per_tier"]["realtime"]
    met = 60 * 2e-6 + 40 * 1e-6 + 11 * 8e-6  # realtime prices, cached input at its price
    missed = 2 * (100 * 1e-6 + 11 * 4e-6)  # standard prices
    assert rt["revenue_usd"] == pytest.approx(met + missed, rel=1e-12)
    assert s["per_tier"]["standard"]["revenue_usd"] == pytest.approx(200e-6 + 21 * 4e-6)
    assert s["per_tier"]["flex"]["revenue_usd"] == 0.0  # refused: nothing
    total = sum(t["revenue_usd"] for t in s["per_tier"].values())
    assert s["revenue_usd"] == pytest.approx(total, rel=1e-12)


def test_service_levels_count_met_over_offered_and_goodput_only_met_tokens() -> None:
    s = summary()
    duration = 150.0  # the last end of any outcome
    assert s["duration_s"] == duration
    rt, std = s["per_tier"]["realtime"], s["per_tier"]["standard"]
    flex, batch = s["per_tier"]["flex"], s["per_tier"]["batch"]
    assert rt["slo_attainment"] == pytest.approx(1 / 3)
    assert rt["goodput_tokens_per_s"] == pytest.approx(11 / duration)
    assert std["slo_attainment"] == 0.5  # the abandoned one is offered, not met
    assert std["goodput_tokens_per_s"] == pytest.approx(21 / duration)
    assert (std["requests"], std["requests_completed"], std["abandoned"]) == (2, 1, 1)
    assert (flex["requests"], flex["requests_completed"], flex["refused"]) == (1, 0, 1)
    assert flex["slo_attainment"] == 0.0
    assert batch["slo_attainment"] == 0.0 and batch["goodput_tokens_per_s"] == 0.0
    assert (s["requests"], s["requests_completed"]) == (7, 5)


def test_latency_figures_of_served_requests() -> None:
    s = summary()
    assert s["ttft_ms"]["mean"] == pytest.approx((200 + 1000 + 100 + 1000 + 5000) / 5)
    assert s["per_tier"]["realtime"]["ttft_ms"]["p50"] == pytest.approx(200)
    assert s["per_tier"]["realtime"]["tpot_ms"]["mean"] == pytest.approx((40 + 40 + 60) / 3)
    assert s["per_tier"]["standard"]["e2e_ms"]["mean"] == pytest.approx(3000)


def test_cost_energy_and_power_figures() -> None:
    for busy in (0.0, 0.5, 1.0):
        s = summary(busy)
        duration = 150.0
        kwh = (1.0 + (3.0 - 1.0) * busy) * duration / 3600
        cost = 0.01 * duration + kwh * 0.1
        out = 11 * 3 + 21 + 3
        assert s["energy_kwh"] == pytest.approx(kwh, rel=1e-12)
        assert s["cost_usd"] == pytest.approx(cost, rel=1e-12)
        assert s["profit_usd"] == pytest.approx(s["revenue_usd"] - cost, rel=1e-12)
        assert s["output_tokens_per_s"] == pytest.approx(out / duration)
        assert s["cost_per_million_tokens"] == pytest.approx(cost / out * 1e6, rel=1e-12)
        assert s["tokens_per_mw"] == pytest.approx(out / duration / (4.0 / 1000), rel=1e-12)
        assert s["output_tokens_per_s_per_gpu"] == pytest.approx(out / duration / 2)


def test_nothing_served_costs_time_and_earns_nothing() -> None:
    refused = [Outcome(Request(0, 0.0, 10, 10, "flex"), "refused", 0, 2.0)]
    s = summarize(refused, TIERS, PRICES, ECON, 0.0)
    assert s["requests_completed"] == 0 and s["revenue_usd"] == 0.0
    assert s["cost_per_million_tokens"] is None
    assert s["cost_usd"] == pytest.approx(0.01 * 2.0 + 1.0 * 2.0 / 3600 * 0.1)
