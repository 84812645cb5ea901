"""Checks that span tables or need the catalog, each naming the key and line at fault."""

from __future__ import annotations

import math
from collections.abc import Callable

from tokenfactory.catalog import Catalog
from tokenfactory.config.locate import Located, TablePath
from tokenfactory.config.scenario import Scenario, WorkloadSpec
from tokenfactory.errors import UnknownId

_SHARE_TOLERANCE = 1e-6


def check_scenario(scenario: Scenario, located: Located, catalog: Catalog) -> None:
    """Raise ConfigError at the first key that is wrong given the rest of the file."""
    _known(located, ("hardware",), "gpu", catalog.gpu, scenario.hardware.gpu)
    _known(located, ("model",), "name", catalog.model, scenario.model.name)
    tp, gpus = scenario.engine.tensor_parallel, scenario.hardware.gpus
    if gpus % tp:
        message = f"tensor_parallel = {tp} does not divide [hardware] gpus = {gpus}"
        raise located.error(("engine",), "tensor_parallel", message, name_key=False)
    _workload(scenario.workload, located, catalog)
    _economics(scenario, located)
    for tier_id in scenario.tiers:
        _known(located, ("tiers", tier_id), None, catalog.tier, tier_id)


def _known(
    located: Located, table: TablePath, key: str | None, lookup: Callable[[str], object], value: str
) -> None:
    try:
        lookup(value)
    except UnknownId as e:
        raise located.error(table, key, e.message) from None


def _workload(w: WorkloadSpec, located: Located, catalog: Catalog) -> None:
    table = ("workload",)
    for key, mode in (("qps", "poisson"), ("concurrency", "concurrency")):
        if w.arrival == mode and getattr(w, key) is None:
            raise located.error(table, key, f"required when arrival = {mode!r}")
    seen: set[str] = set()
    for i, entry in enumerate(w.mix):
        _known(located, ("workload", "mix", i), "tier", catalog.tier, entry.tier)
        if entry.tier in seen:
            raise located.error(("workload", "mix", i), "tier", f"{entry.tier!r} appears twice")
        seen.add(entry.tier)
    total = math.fsum(entry.share for entry in w.mix)
    if w.mix and abs(total - 1) > _SHARE_TOLERANCE:
        raise located.error(("workload", "mix"), "share", f"shares sum to {total:g}, not 1")
    for name, spec in (("sessions", w.sessions), ("agents", w.agents)):
        if spec is not None:
            _known(located, ("workload", name), "tier", catalog.tier, spec.tier)
    if w.requests > 0 and w.trace is None:
        for key in ("input_tokens", "output_tokens"):
            if getattr(w, key) is None:
                raise located.error(table, key, "required when requests > 0 (or give a trace)")
    humans = w.sessions is not None and w.sessions.count > 0
    agents = w.agents is not None and w.agents.count > 0
    if w.requests == 0 and w.trace is None and not humans and not agents:
        raise located.error(
            table,
            "requests",
            "empty workload: requests = 0 and no trace, [workload.sessions] or [workload.agents]",
        )


def _economics(scenario: Scenario, located: Located) -> None:
    """Without `ownership`, rent and owned inputs together are ambiguous; with it, the
    inputs of the other kind are kept (to flip ownership later) and unused."""
    e = scenario.economics
    owned_inputs = [k for k in ("capex_per_gpu", "years") if getattr(e, k) is not None]
    if e.ownership is None and owned_inputs and e.rent_per_gpu_hour is not None:
        raise located.error(
            ("economics",),
            "rent_per_gpu_hour",
            f"given with {owned_inputs[0]}; say ownership = 'rented' or 'owned'",
        )
