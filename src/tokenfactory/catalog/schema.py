"""Typed rows of the catalog: GPUs, models, tier presets and energy defaults.

Every row carries `sources`: where each of its figures was published. Units are in the
field names (`_tflops` dense, `_gb`, `_tb_s`, `_w`, `_kw`, `_usd`, prices per 1M tokens).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Precision = Literal["bf16", "fp8", "fp4"]
PRECISIONS: tuple[Precision, ...] = ("bf16", "fp8", "fp4")
BYTES_PER_PARAM: dict[Precision, float] = {"bf16": 2.0, "fp8": 1.0, "fp4": 0.5}


class Row(BaseModel):
    """A catalog row: an id, a display name and the sources of its figures."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1)
    name: str = Field(min_length=1)
    sources: dict[str, str] = Field(min_length=1)


class Gpu(Row):
    """One accelerator, with datasheet figures and published cost constants."""

    vendor: Literal["nvidia", "amd"]
    bf16_tflops: float = Field(gt=0)
    fp8_tflops: float | None = Field(default=None, gt=0)
    fp4_tflops: float | None = Field(default=None, gt=0)
    hbm_gb: float = Field(gt=0)
    hbm_tb_s: float = Field(gt=0)
    tdp_w: float = Field(gt=0)
    scaleup_gb_s: float = Field(gt=0)
    kw_per_gpu: float = Field(gt=0)
    rent_per_gpu_hour: Decimal = Field(gt=0)
    purchase_usd: Decimal = Field(gt=0)

    def tflops(self, precision: Precision) -> float:
        """Dense TFLOPS at a precision; without native support the math runs at bf16."""
        native = {"bf16": self.bf16_tflops, "fp8": self.fp8_tflops, "fp4": self.fp4_tflops}
        return native[precision] or self.fp8_tflops or self.bf16_tflops


class Model(Row):
    """One model's architecture (from its published config) and its list price."""

    hf_repo: str
    layers: int = Field(gt=0)
    hidden_size: int = Field(gt=0)
    attention_heads: int = Field(gt=0)
    kv_heads: int = Field(gt=0)
    head_dim: int = Field(gt=0)
    intermediate_size: int = Field(gt=0)
    vocab_size: int = Field(gt=0)
    max_context: int = Field(gt=0)
    total_params_b: float = Field(gt=0)
    active_params_b: float = Field(gt=0)
    attention: Literal["gqa", "mla"]
    tied_embeddings: bool = False
    experts: int = Field(default=0, ge=0)
    experts_active: int = Field(default=0, ge=0)
    experts_shared: int = Field(default=0, ge=0)
    moe_intermediate_size: int = Field(default=0, ge=0)
    dense_layers: int = Field(default=0, ge=0)
    kv_lora_rank: int = Field(default=0, ge=0)
    qk_rope_head_dim: int = Field(default=0, ge=0)
    v_head_dim: int = Field(default=0, ge=0)
    q_lora_rank: int = Field(default=0, ge=0)
    sliding_window: int = Field(default=0, ge=0)
    sliding_window_layers: int = Field(default=0, ge=0)
    price_in: Decimal = Field(ge=0)
    price_cached_in: Decimal = Field(ge=0)
    price_out: Decimal = Field(ge=0)

    @model_validator(mode="after")
    def _consistent(self) -> Model:
        if self.active_params_b > self.total_params_b:
            raise ValueError("active_params_b exceeds total_params_b")
        if self.experts_active > self.experts:
            raise ValueError("experts_active exceeds experts")
        if self.attention == "mla" and self.kv_lora_rank == 0:
            raise ValueError("attention 'mla' needs kv_lora_rank")
        if self.sliding_window_layers > self.layers:
            raise ValueError("sliding_window_layers exceeds layers")
        return self

    @property
    def is_moe(self) -> bool:
        """Whether the model routes tokens through experts."""
        return self.experts > 0


class Tier(Row):
    """A service tier preset: its objective, patience and price relative to standard."""

    service_tier: list[str]
    price_ratio: Decimal = Field(gt=0)
    ttft_ms: float | None = Field(default=None, gt=0)
    tpot_ms: float | None = Field(default=None, gt=0)
    completion_window_s: float | None = Field(default=None, gt=0)
    patience_s: float = Field(gt=0)
    preemptible: bool


class Engine(Row):
    """An inference engine kind and its batching defaults."""

    max_num_seqs: int = Field(gt=0)
    max_batched_tokens: int = Field(gt=0)
    chunked_prefill: bool
    block_size: int = Field(gt=0)
    kv_memory: float = Field(gt=0, le=1)  # share of memory the engine gives the KV cache
    kv_memory_of: Literal["total", "free"]  # of all HBM, or of what the weights leave


class Energy(BaseModel):
    """Facility and ownership defaults used when the user gives none."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    pue: float = Field(ge=1)
    electricity_per_kwh: Decimal = Field(ge=0)
    amortisation_years: float = Field(gt=0)
    idle_power_fraction: float = Field(ge=0, le=1)
    operations_per_gpu_hour: Decimal = Field(ge=0)
    input_per_output: float = Field(ge=0)
    sources: dict[str, str] = Field(min_length=1)
