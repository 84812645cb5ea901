"""Simulator fixtures: a real catalog model on a real GPU, with a tiny hand-made efficiency.

`make_setup` builds a `Setup` directly, so a test controls every knob and can compute the
expected event times from `PerfModel.step_time` by hand.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import pytest

from tokenfactory.catalog import Catalog
from tokenfactory.perf.model import MEMORY_RESERVE, Deployment, Efficiency, PerfModel
from tokenfactory.sched import TierRule
from tokenfactory.sim.fleet import TierPrice
from tokenfactory.sim.replica import EngineLimits
from tokenfactory.sim.report import Economics
from tokenfactory.sim.run import Setup
from tokenfactory.workload import OpenLoop, Request, Workload

EFFICIENCY = Efficiency(compute=0.5, memory=0.8, step_overhead_s=0.004, seq_overhead_s=1e-5)
TIER_NAMES = ("realtime", "standard", "flex", "batch")

MakeDeployment = Callable[..., Deployment]
MakeSetup = Callable[..., Setup]
MakeTiers = Callable[..., dict[str, TierRule]]


def _open_tiers(**patience: float) -> dict[str, TierRule]:
    """Tiers with no objectives and endless patience (unless given per tier)."""
    return {
        name: TierRule(
            name, rank, 1.0, None, None, patience.get(name, math.inf), name in ("flex", "batch")
        )
        for rank, name in enumerate(TIER_NAMES)
    }


@pytest.fixture
def make_tiers() -> MakeTiers:
    """`make_tiers(flex=0.5)`: tiers without objectives, patience endless unless given."""
    return _open_tiers


@pytest.fixture
def deployment(catalog: Catalog) -> MakeDeployment:
    """Llama 3.1 8B in bf16 on one H100; `kv_tokens` shrinks the KV cache to that size."""

    def make(kv_tokens: int | None = None) -> Deployment:
        base = Deployment(catalog.model("llama-3.1-8b"), catalog.gpu("H100-SXM"), "bf16")
        if kv_tokens is None:
            return base
        p = PerfModel(base, EFFICIENCY)
        hbm = base.gpu.hbm_gb * 1e9
        need = p.weight_bytes_per_gpu + (kv_tokens + 0.5) * p.kv_bytes_per_token
        util = MEMORY_RESERVE + need / hbm
        return Deployment(base.model, base.gpu, "bf16", memory_utilization=util)

    return make


@pytest.fixture
def perf(deployment: MakeDeployment) -> PerfModel:
    """The performance model of the default deployment."""
    return PerfModel(deployment(), EFFICIENCY)


@pytest.fixture
def make_setup(deployment: MakeDeployment) -> MakeSetup:
    """A one-replica fcfs setup of a request list (or any workload); every knob a keyword."""

    def make(
        work: Sequence[Request] | Workload,
        *,
        kv_tokens: int | None = None,
        limits: EngineLimits | None = None,
        policy: str = "fcfs",
        tiers: dict[str, TierRule] | None = None,
        prices: dict[str, TierPrice] | None = None,
        economics: Economics | None = None,
        replicas: int = 1,
        router: str = "least_load",
    ) -> Setup:
        workload = OpenLoop(work) if isinstance(work, Sequence) else work
        return Setup(
            deployment(kv_tokens),
            EFFICIENCY,
            limits or EngineLimits(),
            replicas,
            workload,
            tiers or _open_tiers(),
            prices or {name: TierPrice(0.0, 0.0, 0.0) for name in TIER_NAMES},
            economics or Economics(1, 0.0, 0.0, 0.0, 0.0, 1.0),
            policy,
            router,
        )

    return make
