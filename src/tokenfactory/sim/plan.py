"""The planner: which fleet (GPU kind x count x tensor parallel x policy) earns most.

A demand file is a scenario file without `[hardware]`, plus `[search]` and `[objectives]`
(docs/planner.md). Per (GPU, tensor parallel) the search finds the smallest count at which
the `value` policy meets every objective (doubling, then bisecting), simulates each policy
there and one replica more, and ranks the feasible candidates by profit. Same seed for all.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, ValidationError

from tokenfactory.catalog import Catalog
from tokenfactory.config import LoadedScenario, Located, load_scenario_text
from tokenfactory.config.scenario import HardwareSpec, Policy, Table
from tokenfactory.errors import ConfigError, UnknownId
from tokenfactory.perf.efficiency import efficiency_for
from tokenfactory.perf.model import PerfModel
from tokenfactory.perf.model import deployment as perf_deployment
from tokenfactory.sim.build import build
from tokenfactory.sim.run import simulate

DEFAULT_OBJECTIVES = {"realtime": 0.99, "standard": 0.95}
SIZING_POLICY = "value"
_OWN = ("search", "objectives")
_HEADER = re.compile(r"^\s*\[\[?\s*([A-Za-z0-9_-]+)\s*[.\]]")


class SearchSpec(Table):
    """`[search]`: the GPU kinds, largest fleet, tensor-parallel degrees and policies tried."""

    gpus: tuple[str, ...] | None = Field(default=None, strict=False, min_length=1)
    max_gpus: int = Field(default=8, gt=0, le=1024)
    tensor_parallel: tuple[Annotated[int, Field(gt=0)], ...] = Field(
        default=(1, 2, 4, 8), strict=False, min_length=1
    )
    policies: tuple[Policy, ...] = Field(
        default=("fcfs", "priority", "value"), strict=False, min_length=1
    )


@dataclass(frozen=True, slots=True)
class Demand:
    """A loaded demand file: the scenario (placeholder hardware), the space, the objectives."""

    loaded: LoadedScenario
    search: SearchSpec
    gpus: tuple[str, ...]
    objectives: dict[str, float]


@dataclass(frozen=True, slots=True)
class Candidate:
    """One simulated fleet and how it did against the objectives."""

    gpu: str
    gpus: int
    tensor_parallel: int
    policy: str
    feasible: bool
    shortfall: float  # sum over tiers of how far attainment falls below its objective
    slo_attainment: dict[str, float]
    profit_usd: float  # over the simulated window, which ranks the candidates
    revenue_usd: float
    cost_usd: float
    duration_s: float  # until the last request ended
    demand_s: float  # until the last request arrived
    profit_per_hour: float  # revenue per hour of demand - cost per hour of running
    revenue_per_hour: float
    cost_per_hour: float
    cost_per_million_tokens: float | None
    tokens_per_s_per_gpu: float
    requests_completed: int
    requests: int

    @property
    def name(self) -> str:
        """`"B200 x4 TP1 value"`."""
        return f"{self.gpu} x{self.gpus} TP{self.tensor_parallel} {self.policy}"


@dataclass(frozen=True, slots=True)
class Plan:
    """Feasible candidates ranked by profit per hour, the closest misses, what was skipped."""

    candidates: list[Candidate]
    misses: list[Candidate]
    skipped: list[str] = field(default_factory=list)
    objectives: dict[str, float] = field(default_factory=dict)
    max_gpus: int = 0


def load_demand(path: Path, catalog: Catalog) -> Demand:
    """Read a demand file; every error is a ConfigError naming its file and line."""
    try:
        text = path.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read demand file ({e})") from None
    name = str(path)
    located = Located(name, text)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        load_scenario_text(text, name, catalog)  # raises the loader's located message
        raise
    for table, key in (("hardware", None), ("engine", "tensor_parallel"), ("scheduler", "policy")):
        if table in data and (key is None or key in data[table]):
            raise located.error(table, key, "is chosen by the planner: give it in [search]")
    search = _search(data.get("search", {}), located)
    gpus = search.gpus or tuple(catalog.gpus)
    for i, gpu in enumerate(gpus):
        try:
            catalog.gpu(gpu)
        except UnknownId as e:
            raise _entry_error(located, "gpus", i, e.message) from None
    objectives = _objectives(data.get("objectives", DEFAULT_OBJECTIVES), located, catalog)
    body = _without(text, data, name)
    body += f'\n[hardware]\ngpu = "{gpus[0]}"\ngpus = 1\n'
    loaded = load_scenario_text(body, name, catalog, base_dir=path.parent)
    return Demand(LoadedScenario(loaded.scenario, located, path), search, gpus, objectives)


def _search(raw: object, located: Located) -> SearchSpec:
    if not isinstance(raw, dict):
        raise located.error((), "search", "must be a table")
    try:
        return SearchSpec.model_validate(raw)
    except ValidationError as e:
        err = e.errors()[0]
    loc = tuple(err["loc"])
    key = str(loc[0]) if loc else None
    if err["type"] == "extra_forbidden":
        valid = ", ".join(SearchSpec.model_fields)
        message = f"unknown key {key!r}; valid: {valid}"
        raise located.error("search", key, message, name_key=False)
    message = f"{err['msg'][:1].lower()}{err['msg'][1:]}, got {err['input']!r}"
    if len(loc) > 1 and isinstance(loc[1], int):
        raise _entry_error(located, str(key), loc[1], message)
    raise located.error("search", key, message)


def _entry_error(located: Located, key: str, index: int, message: str) -> ConfigError:
    """`FILE:LINE: [search] gpus: entry 2: ...`, LINE that of the entry."""
    line = located.line(("search", key, index))
    return ConfigError(f"{located.name}:{line}: [search] {key}: entry {index + 1}: {message}")


def _objectives(raw: object, located: Located, catalog: Catalog) -> dict[str, float]:
    if not isinstance(raw, dict):
        raise located.error((), "objectives", "must be a table of tier = share")
    out: dict[str, float] = {}
    for tier, share in raw.items():
        try:
            catalog.tier(tier)
        except UnknownId as e:
            raise located.error("objectives", tier, e.message) from None
        if isinstance(share, bool) or not isinstance(share, int | float) or not 0 <= share <= 1:
            message = f"must be a share of requests from 0 to 1, got {share!r}"
            raise located.error("objectives", tier, message)
        out[tier] = float(share)
    return out


def _without(text: str, data: dict[str, Any], name: str) -> str:
    """The text with the planner's own tables blanked out, line numbers kept."""
    lines, skipping = text.splitlines(), False
    for i, line in enumerate(lines):
        header = _HEADER.match(line)
        if header:
            skipping = header.group(1) in _OWN
        if skipping:
            lines[i] = ""
    body = "\n".join(lines)
    rest = {k: v for k, v in data.items() if k not in _OWN}
    if tomllib.loads(body) != rest:
        tables = " and ".join(f"[{t}]" for t in _OWN)
        raise ConfigError(f"{name}:1: write {tables} as tables with their own headers")
    return body


def fits(demand: Demand, catalog: Catalog, gpu: str, tp: int) -> bool:
    """Whether the model's weights leave room for KV cache on `tp` GPUs of this kind."""
    s = demand.loaded.scenario
    d = perf_deployment(
        catalog,
        s.model.name,
        gpu,
        s.model.precision,
        tp,
        s.engine.kind,
        s.kv_precision,
        s.engine.gpu_memory_utilization,
    )
    return PerfModel(d, efficiency_for(s.engine.kind)).fits()


def fleet_scenario(demand: Demand, gpu: str, gpus: int, tp: int) -> LoadedScenario:
    """The demand as a scenario on one fleet: `gpus` GPUs of kind `gpu`, `tp` per replica."""
    loaded = demand.loaded
    s = loaded.scenario
    scenario = s.model_copy(
        update={
            "hardware": HardwareSpec(gpu=gpu, gpus=gpus),
            "engine": s.engine.model_copy(update={"tensor_parallel": tp}),
        }
    )
    return LoadedScenario(scenario, loaded.located, loaded.path)


def evaluate(
    demand: Demand, catalog: Catalog, gpu: str, gpus: int, tp: int, policy: str
) -> Candidate:
    """Simulate the demand on one fleet and judge it against the objectives."""
    setup, _ = build(fleet_scenario(demand, gpu, gpus, tp), catalog, policy)
    result = simulate(setup)
    r = result.summary
    demand_s = max((o.req.arrival_s for o in result.fleet.outcomes), default=0.0)
    attained = {t: v["slo_attainment"] for t, v in r["per_tier"].items()}
    shortfall = sum(
        max(0.0, goal - attained[t]) for t, goal in demand.objectives.items() if t in attained
    )
    window = demand_s if demand_s > 0 else r["duration_s"]  # offline: all arrive at 0
    revenue_per_hour = r["revenue_usd"] / window * 3600
    cost_per_hour = r["cost_usd"] / r["duration_s"] * 3600
    return Candidate(
        gpu=gpu,
        gpus=gpus,
        tensor_parallel=tp,
        policy=policy,
        feasible=shortfall == 0,
        shortfall=shortfall,
        slo_attainment=attained,
        profit_usd=r["profit_usd"],
        revenue_usd=r["revenue_usd"],
        cost_usd=r["cost_usd"],
        duration_s=r["duration_s"],
        demand_s=demand_s,
        profit_per_hour=revenue_per_hour - cost_per_hour,
        revenue_per_hour=revenue_per_hour,
        cost_per_hour=cost_per_hour,
        cost_per_million_tokens=r["cost_per_million_tokens"],
        tokens_per_s_per_gpu=r["output_tokens_per_s_per_gpu"],
        requests_completed=r["requests_completed"],
        requests=r["requests"],
    )


def search(demand: Demand, catalog: Catalog) -> Plan:
    """Size each (GPU, tensor parallel) pair, try each policy there, rank by profit."""
    cache: dict[tuple[str, int, int, str], Candidate] = {}

    def run(gpu: str, n: int, tp: int, policy: str) -> Candidate:
        key = (gpu, n, tp, policy)
        if key not in cache:
            cache[key] = evaluate(demand, catalog, gpu, n, tp, policy)
        return cache[key]

    def meets(gpu: str, tp: int, replicas: int) -> bool:
        return run(gpu, replicas * tp, tp, SIZING_POLICY).feasible

    top, skipped, tried = demand.search.max_gpus, [], []
    for gpu in demand.gpus:
        for tp in demand.search.tensor_parallel:
            if tp > top or not fits(demand, catalog, gpu, tp):
                why = f"more than max_gpus = {top}" if tp > top else "the model does not fit"
                skipped.append(f"{gpu} TP{tp}: {why}")
                continue
            try:
                m = _smallest(partial(meets, gpu, tp), top // tp)
            except ConfigError as e:
                skipped.append(f"{gpu} TP{tp}: {e.message}")
                continue
            if m is None:
                tried.append(run(gpu, top // tp * tp, tp, SIZING_POLICY))
                continue
            for k in (m, m + 1):
                if k * tp <= top:
                    tried += [run(gpu, k * tp, tp, p) for p in demand.search.policies]
    order: dict[str, int] = {p: i for i, p in enumerate(demand.search.policies)}
    ranked = sorted(
        {c.name: c for c in tried if c.feasible}.values(),
        key=lambda c: (-round(c.profit_usd, 6), c.gpus, order[c.policy]),
    )
    misses = sorted(
        {c.name: c for c in tried if not c.feasible}.values(),
        key=lambda c: (c.shortfall, -c.profit_usd),
    )
    return Plan(ranked, misses, skipped, demand.objectives, top)


def _smallest(ok: Callable[[int], bool], most: int) -> int | None:
    """The least m in 1..most with ok(m), assuming ok stays true once true: double, bisect."""
    low, m = 0, 1  # ok(low) is false (or low = 0)
    while not ok(m):
        if m == most:
            return None
        low, m = m, min(2 * m, most)
    while m - low > 1:
        mid = (low + m) // 2
        low, m = (low, mid) if ok(mid) else (mid, m)
    return m
