"""Build a simulation from a loaded scenario file: every check that needs the catalog.

Errors name the scenario's key and line (the model does not fit, an empty workload).
"""

from __future__ import annotations

from decimal import Decimal

import numpy as np

from tokenfactory.catalog import Catalog, Tier
from tokenfactory.config import LoadedScenario
from tokenfactory.config.scenario import Scenario
from tokenfactory.economics.hardware import Owned
from tokenfactory.economics.query import Filled, resolve_hardware
from tokenfactory.perf.efficiency import efficiency_for
from tokenfactory.perf.model import PerfModel
from tokenfactory.perf.model import deployment as perf_deployment
from tokenfactory.sched import TierRule
from tokenfactory.sched.job import TIER_ORDER
from tokenfactory.sim.fleet import TierPrice
from tokenfactory.sim.replica import EngineLimits
from tokenfactory.sim.report import Economics
from tokenfactory.sim.run import Setup
from tokenfactory.workload import (
    AgentLoops,
    ChatSessions,
    ClosedLoop,
    Composite,
    Ids,
    TierMix,
    Workload,
    offline,
    parse_length,
    poisson,
    read_trace,
)


def build(
    loaded: LoadedScenario, catalog: Catalog, policy: str | None = None, seed: int | None = None
) -> tuple[Setup, list[Filled]]:
    """The simulation a scenario describes, and the cost inputs the catalog filled in."""
    s = loaded.scenario
    engine = catalog.engine(s.engine.kind)
    deployment = perf_deployment(
        catalog,
        s.model.name,
        s.hardware.gpu,
        s.model.precision,
        s.engine.tensor_parallel,
        s.engine.kind,
        s.kv_precision,
        s.engine.gpu_memory_utilization,
        s.engine.overlap_scheduling,
    )
    efficiency = efficiency_for(s.engine.kind)
    perf = PerfModel(deployment, efficiency)
    if not perf.fits():
        need = perf.weight_bytes_per_gpu / 1e9
        have = deployment.gpu.hbm_gb * deployment.memory_utilization
        raise loaded.error(
            "engine",
            "tensor_parallel",
            f"{s.model.name} at {s.model.precision} needs {need:.0f} GB of weights per GPU "
            f"at tensor_parallel = {s.engine.tensor_parallel}, with no room left for KV cache "
            f"in {have:.0f} GB of a {s.hardware.gpu}; raise tensor_parallel or lower precision",
        )
    limits = EngineLimits(
        max_num_seqs=s.engine.max_num_seqs or engine.max_num_seqs,
        max_batched_tokens=s.engine.max_batched_tokens or engine.max_batched_tokens,
        chunked_prefill=(
            engine.chunked_prefill if s.engine.chunked_prefill is None else s.engine.chunked_prefill
        ),
        block_size=s.engine.block_size or engine.block_size,
    )
    presets = s.tier_presets(catalog)
    tiers = {name: tier_rule(presets[name], rank) for rank, name in enumerate(TIER_ORDER)}
    prices = tier_prices(s, catalog, presets)
    economics, filled = fleet_economics(s, catalog)
    setup = Setup(
        deployment=deployment,
        efficiency=efficiency,
        limits=limits,
        replicas=s.replicas,
        workload=workload(loaded, seed),
        tiers=tiers,
        prices=prices,
        economics=economics,
        policy=policy or s.scheduler.policy,
        router=s.scheduler.router,
    )
    return setup, filled


def tier_rule(t: Tier, rank: int) -> TierRule:
    """A catalog tier as the scheduler sees it."""
    return TierRule(
        name=t.id,
        rank=rank,
        price_ratio=float(t.price_ratio),
        ttft_s=None if t.ttft_ms is None else t.ttft_ms / 1000,
        tpot_s=None if t.tpot_ms is None else t.tpot_ms / 1000,
        patience_s=t.patience_s,
        preemptible=t.preemptible,
        window_s=t.completion_window_s,
    )


def tier_prices(s: Scenario, catalog: Catalog, presets: dict[str, Tier]) -> dict[str, TierPrice]:
    """Dollars per token of each kind, per tier: list price x the tier's ratio."""
    base = s.list_prices(catalog)
    million = Decimal(1_000_000)
    return {
        name: TierPrice(
            float(base.input * t.price_ratio / million),
            float(base.cached_input * t.price_ratio / million),
            float(base.output * t.price_ratio / million),
        )
        for name, t in presets.items()
    }


def fleet_economics(s: Scenario, catalog: Catalog) -> tuple[Economics, list[Filled]]:
    """The fleet's cost per second and power, from `[economics]` and the catalog."""
    gpu = catalog.gpu(s.hardware.gpu)
    given = s.economics
    hardware, filled = resolve_hardware(gpu, catalog.energy, given, given.owned)
    gpus, power = s.hardware.gpus, hardware.power
    if isinstance(hardware, Owned):
        per_hour = hardware.capital_per_gpu_hour() + hardware.operations_per_gpu_hour
        energy_price = float(hardware.electricity_per_kwh)
    else:
        per_hour, energy_price = hardware.rent_per_gpu_hour, 0.0
    return (
        Economics(
            gpus=gpus,
            cost_per_s_fixed=float(per_hour) * gpus / 3600,
            energy_cost_per_kwh=energy_price,
            idle_kw=power.facility_kw(0.0) * gpus,
            busy_kw=power.facility_kw(1.0) * gpus,
            provisioned_kw=power.peak_kw * power.pue * gpus,
        ),
        filled,
    )


def workload(loaded: LoadedScenario, seed: int | None = None) -> Workload:
    """The demand: plain requests (or a trace), chat sessions and agent loops together."""
    w = loaded.scenario.workload
    rng = np.random.default_rng(w.seed if seed is None else seed)
    ids = Ids()
    mix = TierMix(tuple(w.tier_shares().items()) or (("standard", 1.0),))
    parts: list[Workload] = []
    if w.trace is not None:
        parts.append(read_trace(w.trace, ids))
    elif w.requests:
        assert w.input_tokens is not None and w.output_tokens is not None
        inputs = parse_length(w.input_tokens, loaded.where("workload", "input_tokens"))
        outputs = parse_length(w.output_tokens, loaded.where("workload", "output_tokens"))
        if w.arrival == "poisson":
            assert w.qps is not None
            parts.append(poisson(w.qps, w.requests, inputs, outputs, mix, rng, ids))
        elif w.arrival == "concurrency":
            assert w.concurrency is not None
            parts.append(ClosedLoop(w.concurrency, w.requests, inputs, outputs, mix, rng, ids))
        else:
            parts.append(offline(w.requests, inputs, outputs, mix, rng, ids))
    if w.sessions is not None and w.sessions.count:
        c = w.sessions
        where = loaded.where("workload.sessions")
        parts.append(
            ChatSessions(
                c.count,
                c.rate,
                parse_length(c.turns, where),
                parse_length(c.think_s, where),
                c.system_tokens,
                parse_length(c.user_tokens, where),
                parse_length(c.output_tokens, where),
                TierMix(((c.tier, 1.0),)),
                rng,
                ids,
            )
        )
    if w.agents is not None and w.agents.count:
        a = w.agents
        where = loaded.where("workload.agents")
        parts.append(
            AgentLoops(
                a.count,
                a.rate,
                parse_length(a.steps, where),
                a.system_tokens,
                a.task_tokens,
                parse_length(a.tool_output_tokens, where),
                parse_length(a.call_output_tokens, where),
                parse_length(a.reasoning_output_tokens, where),
                a.reasoning_share,
                TierMix(((a.tier, 1.0),)),
                rng,
                ids,
            )
        )
    if not parts:
        raise loaded.error("workload", "requests", "empty workload: nothing to simulate")
    return parts[0] if len(parts) == 1 else Composite(parts)
