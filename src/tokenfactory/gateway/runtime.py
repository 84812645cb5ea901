"""Build the floor from a factory file: engines, dispatcher, prices, costs, ledger.

The composition root of `serve` (with `app.py`): everything the gateway needs is made
here and passed in; nothing is reached through module state.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from tokenfactory.catalog import Catalog, Model
from tokenfactory.config.factory import FactoryFile, ReplicaSpec
from tokenfactory.economics import Prices
from tokenfactory.economics.query import resolve_hardware
from tokenfactory.engines.base import Engine
from tokenfactory.gateway.dispatch import Dispatcher, ReplicaSlot
from tokenfactory.gateway.faults import Timeouts
from tokenfactory.gateway.meter import ReplicaCost
from tokenfactory.ledger import Ledger, Pnl
from tokenfactory.perf.efficiency import efficiency_for
from tokenfactory.perf.model import PerfModel
from tokenfactory.perf.model import deployment as perf_deployment
from tokenfactory.sched import POLICIES, TierRule
from tokenfactory.sched.job import TIER_ORDER
from tokenfactory.sim.build import tier_rule

ADMIN_KEY_ENV = "TOKENFACTORY_ADMIN_KEY"
# The performance model of each engine kind a factory can name.
_PERF_KIND = {
    "vllm": "vllm",
    "openai": "vllm",
    "twin": "vllm",
    "sglang": "sglang",
    "llamacpp": "llamacpp",
}


@dataclass
class Floor:
    """Everything the gateway runs on."""

    factory: FactoryFile
    ledger: Ledger
    dispatcher: Dispatcher
    models: dict[str, Model]  # served name -> catalog model
    tiers: dict[str, TierRule]
    prices: dict[tuple[str, str], Prices]  # (catalog model id, tier) -> prices
    costs: dict[str, ReplicaCost]  # replica name -> cost
    context: dict[str, int]  # served name -> the context window the engine serves
    admin_key: str
    engines: list[Engine] = field(default_factory=list)
    # Its replicas cost money from here: the P&L counts no replica time before it.
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def cost_rates(self) -> dict[str, Decimal]:
        """Each replica's cost in dollars per second, for the P&L."""
        return {name: c.usd_per_s for name, c in self.costs.items()}

    def since(self, since: datetime | None) -> datetime:
        """A window's start, no earlier than this floor's: idle cost is only counted for
        replica time this floor had (`None`: since it started)."""
        return self.started_at if since is None else max(since, self.started_at)

    def pnl(self, since: datetime | None, until: datetime) -> dict[str, Any]:
        """The ledger's P&L, from no earlier than this floor's start, with the energy the
        replicas drew and tokens per joule."""
        report = self.ledger.pnl(self.since(since), until, self.cost_rates())
        return with_energy(report, self.costs)


def with_energy(pnl: Pnl, costs: dict[str, ReplicaCost]) -> dict[str, Any]:
    """Add `energy_kwh` and `tokens_per_joule` (output tokens) where replicas have GPUs."""
    window = float(pnl["window"]["seconds"])
    drawn = [
        c.kwh(pnl["per_replica"][name]["busy_s"] if name in pnl["per_replica"] else 0.0, window)
        for name, c in costs.items()
    ]
    known = [kwh for kwh in drawn if kwh is not None]
    kwh = sum(known) if known else None
    out: dict[str, Any] = dict(pnl)
    out["energy_kwh"] = kwh
    out["tokens_per_joule"] = pnl["tokens"]["output"] / (kwh * 3.6e6) if kwh else None
    return out


def build_floor(factory: FactoryFile, catalog: Catalog, database: str | None = None) -> Floor:
    """The floor a factory file describes (engines are made, not yet started)."""
    slots: list[ReplicaSlot] = []
    costs: dict[str, ReplicaCost] = {}
    models: dict[str, Model] = {}
    context: dict[str, int] = {}
    for index, spec in enumerate(factory.replicas):
        engine = make_engine(spec)
        timeouts = Timeouts(spec.first_token_timeout_s, spec.stall_timeout_s)
        cost = costs[spec.name] = replica_cost(spec, catalog)
        slots.append(
            ReplicaSlot(
                index,
                spec.name,
                engine,
                spec.max_concurrency,
                timeouts=timeouts,
                usd_per_s=float(cost.usd_per_s),
                perf=cost.perf,
            )
        )
        model = catalog.model(spec.model)
        served = spec.served_model or spec.model
        models[served] = model
        window = LLAMACPP_CONTEXT if spec.engine == "llamacpp" else model.max_context
        context[served] = min(context.get(served, window), window)
    presets = dict(catalog.tiers)
    for tier_id, override in factory.tiers.items():
        presets[tier_id] = presets[tier_id].model_copy(
            update=override.model_dump(exclude_none=True)
        )
    tiers = {name: tier_rule(presets[name], rank) for rank, name in enumerate(TIER_ORDER)}
    prices = {
        (m.id, name): _list_prices(factory, m).scaled(presets[name].price_ratio)
        for m in models.values()
        for name in TIER_ORDER
    }
    policy = POLICIES[factory.scheduler.policy]
    admin = factory.server.admin_key or os.environ.get(ADMIN_KEY_ENV) or _new_admin_key()
    return Floor(
        factory=factory,
        ledger=Ledger(database or factory.server.database),
        dispatcher=Dispatcher(slots, policy, factory.scheduler.router),
        models=models,
        tiers=tiers,
        prices=prices,
        costs=costs,
        context=context,
        admin_key=admin,
        engines=[s.engine for s in slots],
    )


LLAMACPP_CONTEXT = 2048


def make_engine(spec: ReplicaSpec) -> Engine:
    """The adapter for one replica."""
    served = spec.served_model or spec.model
    if spec.engine == "llamacpp":
        from tokenfactory.engines.llamacpp import EmbeddedLlamaCpp
        from tokenfactory.engines.models import smollm2_path

        path = spec.path or smollm2_path()
        return EmbeddedLlamaCpp(path, name=spec.name, n_ctx=LLAMACPP_CONTEXT)
    from tokenfactory.engines.openai_http import OpenAIEngine

    assert spec.url is not None
    # vLLM (and the twin, which speaks like it) take a priority and continue a message.
    vllm_like = spec.engine in ("vllm", "twin")
    return OpenAIEngine(
        spec.name,
        spec.url,
        served,
        connect_timeout=spec.connect_timeout_s,
        send_priority=vllm_like,
        continue_final_message=vllm_like,
    )


def replica_cost(spec: ReplicaSpec, catalog: Catalog) -> ReplicaCost:
    """Dollars per second of a replica, and its performance model where it has a GPU."""
    if spec.gpu is None:
        assert spec.cost_per_hour is not None
        return ReplicaCost(spec.name, spec.cost_per_hour / 3600)
    gpu = catalog.gpu(spec.gpu)
    hardware, _ = resolve_hardware(gpu, catalog.energy, spec.economics, spec.economics.owned)
    per_hour = (
        spec.cost_per_hour
        if spec.cost_per_hour is not None
        else hardware.cost_per_gpu_hour(1.0) * spec.gpus
    )
    deployment = perf_deployment(
        catalog,
        spec.model,
        spec.gpu,
        spec.precision,
        spec.tensor_parallel,
        _PERF_KIND[spec.engine],
    )
    perf = PerfModel(deployment, efficiency_for(_PERF_KIND[spec.engine]))
    power = hardware.power
    return ReplicaCost(
        spec.name,
        per_hour / 3600,
        perf,
        idle_kw=power.facility_kw(0.0) * spec.gpus,
        busy_kw=power.facility_kw(1.0) * spec.gpus,
    )


def _list_prices(factory: FactoryFile, model: Model) -> Prices:
    given = factory.prices.get(model.id)
    base = Prices(model.price_in, model.price_cached_in, model.price_out)
    if given is None:
        return base
    return Prices(
        given.input if given.input is not None else base.input,
        given.cached_input if given.cached_input is not None else base.cached_input,
        given.output if given.output is not None else base.output,
    )


def _new_admin_key() -> str:
    return "tf-admin-" + secrets.token_urlsafe(30)
