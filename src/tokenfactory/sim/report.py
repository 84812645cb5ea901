"""What a simulation produced: latency percentiles, service levels, tokens and money.

Floats are fine here: these are the simulator's aggregates (DESIGN.md), not a ledger.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from tokenfactory.sched import TierRule
from tokenfactory.sim.fleet import OK, Outcome, TierPrice

TIERS = ("realtime", "standard", "flex", "batch")


@dataclass(frozen=True, slots=True)
class Economics:
    """The fleet's cost per second at a utilisation, and its provisioned power."""

    gpus: int
    cost_per_s_fixed: float  # capital or rent, per second for the whole fleet
    energy_cost_per_kwh: float  # paid per kWh drawn (0 when rented: it is in the rent)
    idle_kw: float  # grid kW of the whole fleet when idle
    busy_kw: float  # grid kW of the whole fleet when fully busy
    provisioned_kw: float  # all-in kW of the fleet (tokens per MW divides by this)

    def replica_cost_per_s(self, replicas: int) -> float:
        """What a second of one busy replica's time costs: its share of the fixed cost
        and of the fleet's power when busy (a saturated fleet given one more replica
        second of work ends 1 / replicas of a second later)."""
        return (self.cost_per_s_fixed + self.busy_kw * self.energy_cost_per_kwh / 3600) / replicas


def _stats(values: np.ndarray) -> dict[str, float]:
    if values.size == 0:
        return {"mean": 0.0, "p50": 0.0, "p90": 0.0, "p99": 0.0}
    p50, p90, p99 = np.percentile(values, [50, 90, 99])
    return {"mean": float(values.mean()), "p50": float(p50), "p90": float(p90), "p99": float(p99)}


def _billed_tier(o: Outcome, tier: TierRule, tpot_s: float) -> str:
    """Money follows service: a realtime request that missed its objective pays standard."""
    if tier.name == "realtime" and not _met(o, tier, tpot_s):
        return "standard"
    return tier.name


def _met(o: Outcome, tier: TierRule, tpot_s: float) -> bool:
    if o.status != OK:
        return False
    assert o.first_token_s is not None
    ttft = o.first_token_s - o.req.arrival_s
    if tier.ttft_s is not None and ttft > tier.ttft_s:
        return False
    if tier.tpot_s is not None and tpot_s > tier.tpot_s:
        return False
    return tier.window_s is None or o.end_s - o.req.arrival_s <= tier.window_s


def summarize(
    outcomes: list[Outcome],
    tiers: dict[str, TierRule],
    prices: dict[str, TierPrice],
    econ: Economics,
    busy_share: float,
) -> dict[str, Any]:
    """The JSON result of `simulate`: throughput, latency, per-tier service, money."""
    done = [o for o in outcomes if o.status == OK]
    duration = max((o.end_s for o in outcomes), default=0.0) or 1e-9
    ttft = np.array([o.first_token_s - o.req.arrival_s for o in done if o.first_token_s])
    e2e = np.array([o.end_s - o.req.arrival_s for o in done])
    tpot = np.array(
        [
            (o.end_s - o.first_token_s) / (o.output_tokens - 1) if o.output_tokens > 1 else 0.0
            for o in done
            if o.first_token_s is not None
        ]
    )
    revenue = 0.0
    per_tier: dict[str, dict[str, Any]] = {}
    tier_of = np.array([o.req.tier for o in done])
    for name in TIERS:
        offered = [o for o in outcomes if o.req.tier == name]
        if not offered:
            continue
        tier = tiers[name]
        mask = tier_of == name
        met_tokens, met = 0, 0
        tier_revenue = 0.0
        for o, t in zip(done, tpot, strict=True):
            if o.req.tier != name:
                continue
            ok = _met(o, tier, float(t))
            met += ok
            met_tokens += o.output_tokens if ok else 0
            p = prices[_billed_tier(o, tier, float(t))]
            uncached = o.req.input_tokens - o.cached_tokens
            tier_revenue += (
                uncached * p.input + o.cached_tokens * p.cached_input + o.output_tokens * p.output
            )
        revenue += tier_revenue
        per_tier[name] = {
            "requests": len(offered),
            "requests_completed": int(mask.sum()),
            "refused": sum(o.status == "refused" for o in offered),
            "abandoned": sum(o.status == "abandoned" for o in offered),
            "ttft_ms": _stats(ttft[mask] * 1000),
            "tpot_ms": _stats(tpot[mask] * 1000),
            "e2e_ms": _stats(e2e[mask] * 1000),
            "slo_attainment": met / len(offered),
            "goodput_tokens_per_s": met_tokens / duration,
            "revenue_usd": tier_revenue,
        }
    output_tokens = sum(o.output_tokens for o in done)
    input_tokens = sum(o.req.input_tokens for o in done)
    kwh = (econ.idle_kw + (econ.busy_kw - econ.idle_kw) * busy_share) * duration / 3600
    cost = econ.cost_per_s_fixed * duration + kwh * econ.energy_cost_per_kwh
    return {
        "requests": len(outcomes),
        "requests_completed": len(done),
        "duration_s": duration,
        "output_tokens_per_s": output_tokens / duration,
        "input_tokens_per_s": input_tokens / duration,
        "ttft_ms": _stats(ttft * 1000),
        "tpot_ms": _stats(tpot * 1000),
        "e2e_ms": _stats(e2e * 1000),
        "per_tier": per_tier,
        "busy_share": busy_share,
        "energy_kwh": kwh,
        "cost_usd": cost,
        "revenue_usd": revenue,
        "profit_usd": revenue - cost,
        "cost_per_million_tokens": cost / output_tokens * 1e6 if output_tokens else None,
        "tokens_per_mw": output_tokens / duration / (econ.provisioned_kw / 1000),
        "output_tokens_per_s_per_gpu": output_tokens / duration / econ.gpus,
    }
