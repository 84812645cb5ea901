"""Each tier's share of a simulated fleet's cost, by the steps its requests were in.

The floor's rule (gateway/meter.py): every step's time is split evenly among the
sequences in it, and a request costs its share at the fleet's cost rate, whatever became
of it (an abandoned request pays for the prompt chunks it was in, a paused one for the
steps before its pause). Replica time in no step is idle cost, reported on its own and
never spread over the tiers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tokenfactory.sim.fleet import Outcome


def with_tier_costs(
    summary: dict[str, Any], outcomes: Sequence[Outcome], replicas: int
) -> dict[str, Any]:
    """The summary plus `cost_usd` and `profit_usd` per tier and the fleet's `idle_cost_usd`."""
    shares = dict.fromkeys(summary["per_tier"], 0.0)
    for o in outcomes:
        shares[o.req.tier] += o.share_s
    replica_s = summary["duration_s"] * replicas
    rate = summary["cost_usd"] / replica_s if replica_s > 0 else 0.0
    per_tier = {
        name: {
            **t,
            "cost_usd": rate * shares[name],
            "profit_usd": t["revenue_usd"] - rate * shares[name],
        }
        for name, t in summary["per_tier"].items()
    }
    attributed = sum(t["cost_usd"] for t in per_tier.values())
    return {**summary, "per_tier": per_tier, "idle_cost_usd": summary["cost_usd"] - attributed}
