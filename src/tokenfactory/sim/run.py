"""Run one simulation from a fully built setup and summarise it."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from tokenfactory.perf.model import Deployment, Efficiency, PerfModel
from tokenfactory.sched import POLICIES, TierRule
from tokenfactory.sim.clock import Environment
from tokenfactory.sim.fleet import Fleet, TierPrice
from tokenfactory.sim.replica import EngineLimits
from tokenfactory.sim.report import Economics, summarize
from tokenfactory.workload import Workload

# For runs that measure the engine alone: no objectives, no patience, no money.
UNBOUNDED_TIERS = {
    name: TierRule(name, rank, 1.0, None, None, math.inf, False)
    for rank, name in enumerate(("realtime", "standard", "flex", "batch"))
}
NO_PRICES = {name: TierPrice(0.0, 0.0, 0.0) for name in UNBOUNDED_TIERS}
NO_COST = Economics(1, 0.0, 0.0, 0.0, 0.0, 1.0)


@dataclass(frozen=True, slots=True)
class Setup:
    """Everything one simulation needs, already validated."""

    deployment: Deployment
    efficiency: Efficiency
    limits: EngineLimits
    replicas: int
    workload: Workload
    tiers: dict[str, TierRule]
    prices: dict[str, TierPrice]
    economics: Economics
    policy: str = "fcfs"
    router: str = "least_load"


@dataclass(frozen=True, slots=True)
class Result:
    """The summary, plus the fleet for callers that want per-request detail."""

    summary: dict[str, Any]
    fleet: Fleet


def start(setup: Setup) -> tuple[Environment, Fleet]:
    """The fleet of a setup with its first arrivals scheduled, ready to step."""
    env = Environment()
    fleet = Fleet(
        env,
        PerfModel(setup.deployment, setup.efficiency),
        setup.limits,
        setup.replicas,
        setup.workload,
        setup.tiers,
        setup.prices,
        POLICIES[setup.policy],
        setup.router,
        setup.economics.replica_cost_per_s(setup.replicas),
    )
    fleet.start()
    return env, fleet


def simulate(setup: Setup, until: float = float("inf")) -> Result:
    """Run the workload on the fleet until it is served (or `until` seconds)."""
    env, fleet = start(setup)
    env.run(until)
    duration = max((o.end_s for o in fleet.outcomes), default=0.0)
    busy = sum(r.busy_s for r in fleet.replicas)
    share = min(1.0, busy / (duration * setup.replicas)) if duration else 0.0
    summary = summarize(fleet.outcomes, setup.tiers, setup.prices, setup.economics, share)
    summary["preemptions"] = sum(r.preemptions for r in fleet.replicas)
    return Result(summary, fleet)
