"""Each tier's share of a simulated fleet's cost, by the work its requests took.

The floor's rule (gateway/meter.py): a request costs its predicted seconds of replica
time at the fleet's cost rate, whatever became of it; replica time that no request used
is idle cost, reported on its own and never spread over the tiers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tokenfactory.sim.fleet import Outcome


def with_tier_costs(
    summary: dict[str, Any], outcomes: Sequence[Outcome], replicas: int
) -> dict[str, Any]:
    """The summary plus `cost_usd` and `profit_usd` per tier and the fleet's `idle_cost_usd`."""
    work = dict.fromkeys(summary["per_tier"], 0.0)
    for o in outcomes:
        work[o.req.tier] += o.work_s
    # Work is the performance model's estimate: should it ever exceed the replica time,
    # scale it down so that the tiers never carry more than the whole cost.
    replica_s = max(summary["duration_s"] * replicas, sum(work.values()))
    rate = summary["cost_usd"] / replica_s if replica_s > 0 else 0.0
    per_tier = {
        name: {
            **t,
            "cost_usd": rate * work[name],
            "profit_usd": t["revenue_usd"] - rate * work[name],
        }
        for name, t in summary["per_tier"].items()
    }
    attributed = sum(t["cost_usd"] for t in per_tier.values())
    return {**summary, "per_tier": per_tier, "idle_cost_usd": summary["cost_usd"] - attributed}
