"""The planner's scenario file: one frozen pydantic model per TOML table.

Values are kept as written; what the catalog supplies (prices, tier presets, cost inputs)
is filled in by the helpers below or by the economics package, never invented here. Types
are strict: TOML already tells an integer from a string, so `gpus = "8"` is an error.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field

from tokenfactory.catalog import Catalog, Precision, Tier
from tokenfactory.config.fields import Length, Money, Seconds, Tokens

EngineKind = Literal["vllm", "sglang", "trtllm", "llamacpp"]
Arrival = Literal["offline", "poisson", "concurrency"]
Policy = Literal["fcfs", "priority", "value"]
Router = Literal["round_robin", "least_load", "prefix_affinity"]


class Table(BaseModel):
    """A scenario table: unknown keys are errors, values never change after loading."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class HardwareSpec(Table):
    """`[hardware]`: which GPU and how many in all."""

    gpu: str
    gpus: int = Field(default=1, gt=0)


class ModelSpec(Table):
    """`[model]`: the catalog model and the precision of its weights."""

    name: str
    precision: Precision = "bf16"


class EngineSpec(Table):
    """`[engine]`: the inference engine and its batching settings, as vLLM names them."""

    kind: EngineKind
    tensor_parallel: int = Field(default=1, gt=0)
    # None: the engine kind's default from the catalog
    max_num_seqs: int | None = Field(default=None, gt=0)
    max_batched_tokens: int | None = Field(default=None, gt=0)
    chunked_prefill: bool | None = None
    block_size: int | None = Field(default=None, gt=0)
    gpu_memory_utilization: float | None = Field(default=None, gt=0, le=1)  # engine's default
    kv_precision: Precision | None = None
    # False: the engine runs its host work between GPU steps (TensorRT-LLM before its
    # overlap scheduler); vLLM V1, SGLang and TensorRT-LLM 1.0 overlap it.
    overlap_scheduling: bool = True


class MixShare(Table):
    """One `[[workload.mix]]` entry: a tier and its share of the requests."""

    tier: str
    share: float = Field(gt=0, le=1)


class SessionsSpec(Table):
    """`[workload.sessions]`: human chat sessions of several turns."""

    count: int = Field(ge=0)
    rate: float | None = Field(default=None, gt=0)
    turns: Length = 5
    think_s: Seconds = 10.0
    system_tokens: int = Field(default=200, ge=0)
    user_tokens: Length = 100
    output_tokens: Length = 300
    tier: str = "standard"


class AgentsSpec(Table):
    """`[workload.agents]`: agent loops of tool calls and reasoning steps."""

    count: int = Field(ge=0)
    rate: float | None = Field(default=None, gt=0)
    steps: Length = 20
    system_tokens: int = Field(default=2000, ge=0)
    task_tokens: int = Field(default=500, ge=0)
    tool_output_tokens: Tokens = 400
    call_output_tokens: Length = 60
    reasoning_output_tokens: Length = 800
    reasoning_share: float = Field(default=0.3, ge=0, le=1)
    tier: str = "standard"


class WorkloadSpec(Table):
    """`[workload]`: plain requests, a trace, sessions and agents, and the tier mix."""

    arrival: Arrival = "offline"
    requests: int = Field(default=0, ge=0)
    qps: float | None = Field(default=None, gt=0)
    concurrency: int | None = Field(default=None, gt=0)
    input_tokens: Length | None = None
    output_tokens: Length | None = None
    seed: int = 0
    trace: Path | None = Field(default=None, strict=False)
    mix: tuple[MixShare, ...] = Field(default=(), strict=False)
    sessions: SessionsSpec | None = None
    agents: AgentsSpec | None = None

    def tier_shares(self) -> dict[str, float]:
        """Share of plain requests per tier; without a mix every request is standard."""
        return {m.tier: m.share for m in self.mix} if self.mix else {"standard": 1.0}


class SchedulerSpec(Table):
    """`[scheduler]`: queue policy within a replica and routing across replicas."""

    policy: Policy = "fcfs"
    router: Router = "least_load"


class EconomicsSpec(Table):
    """`[economics]`: cost inputs; None means 'take it from the catalog'."""

    ownership: Literal["rented", "owned"] | None = None
    rent_per_gpu_hour: Money | None = Field(default=None, gt=0)
    capex_per_gpu: Money | None = Field(default=None, gt=0)
    years: Money | None = Field(default=None, gt=0)
    pue: float | None = Field(default=None, ge=1)
    electricity_per_kwh: Money | None = Field(default=None, ge=0)
    kw_per_gpu: float | None = Field(default=None, gt=0)
    ops_per_gpu_hour: Money | None = Field(default=None, ge=0)

    @property
    def owned(self) -> bool:
        """Owned when said so, or when owned inputs (capex, years) are given."""
        if self.ownership is not None:
            return self.ownership == "owned"
        return self.capex_per_gpu is not None or self.years is not None


class TierOverride(Table):
    """`[tiers.<id>]`: changes to one catalog tier preset."""

    ttft_ms: float | None = Field(default=None, gt=0)
    tpot_ms: float | None = Field(default=None, gt=0)
    patience_s: float | None = Field(default=None, gt=0)
    completion_window_s: float | None = Field(default=None, gt=0)
    price_ratio: Money | None = Field(default=None, gt=0)
    preemptible: bool | None = None


class PricesSpec(Table):
    """`[prices]`: $ per 1M tokens at the standard tier; None means the list price."""

    input: Money | None = Field(default=None, ge=0)
    cached_input: Money | None = Field(default=None, ge=0)
    output: Money | None = Field(default=None, ge=0)


class ListPrices(NamedTuple):
    """Standard-tier prices per 1M tokens, after the model's list price filled the gaps."""

    input: Decimal
    cached_input: Decimal
    output: Decimal


class Scenario(Table):
    """A whole scenario file, validated."""

    hardware: HardwareSpec
    model: ModelSpec
    engine: EngineSpec
    workload: WorkloadSpec
    scheduler: SchedulerSpec = SchedulerSpec()
    economics: EconomicsSpec = EconomicsSpec()
    tiers: dict[str, TierOverride] = Field(default_factory=dict)
    prices: PricesSpec = PricesSpec()

    @property
    def replicas(self) -> int:
        """Engine instances: total GPUs over tensor parallel."""
        return self.hardware.gpus // self.engine.tensor_parallel

    @property
    def kv_precision(self) -> Precision:
        """The KV cache precision: as given, else the weights' but never below fp8."""
        if self.engine.kv_precision is not None:
            return self.engine.kv_precision
        return "fp8" if self.model.precision == "fp4" else self.model.precision

    def tier_presets(self, catalog: Catalog) -> dict[str, Tier]:
        """The catalog's tiers with this scenario's `[tiers.*]` overrides applied."""
        out = dict(catalog.tiers)
        for tier_id, override in self.tiers.items():
            changes = override.model_dump(exclude_none=True)
            out[tier_id] = catalog.tier(tier_id).model_copy(update=changes)
        return out

    def list_prices(self, catalog: Catalog) -> ListPrices:
        """`[prices]`, each missing price taken from the model's list price."""
        model = catalog.model(self.model.name)
        given = self.prices
        return ListPrices(
            input=model.price_in if given.input is None else given.input,
            cached_input=model.price_cached_in
            if given.cached_input is None
            else given.cached_input,
            output=model.price_out if given.output is None else given.output,
        )
