"""Time of one engine step, and how many tokens of KV cache fit, for one replica.

A step runs the whole model once over a batch that mixes prefill chunks and decode
tokens. Each kind of kernel is bounded by compute or by memory (a roofline per kernel
class), and the step pays both classes in sequence:

    step = linear FLOPs / F + weight bytes / B             dense and expert GEMMs
         + max(attention FLOPs / F, KV bytes / B)          attention over the context
         + 2 x layers x all-reduce(tokens x hidden)        tensor parallel, if any
         + overhead                                        per step and per sequence

and the host's work between steps (scheduling, responses) runs alongside: an engine
that overlaps it with the GPU (`overlap_scheduling`) hides it behind the GPU's step; one
that does not takes step + host, plus what its all-reduces lose to kernels launched one
by one.

F and B are the GPU's dense peak FLOPs and HBM bandwidth times fitted achieved
fractions (`Efficiency`), per engine kind; FP4 GEMMs have their own fraction of the FP4
peak, attention math its own fraction of the bf16 peak. Quantised checkpoints keep the
output head in bf16 (quantisers leave `lm_head` out), so the head is read and multiplied
at bf16 whatever the weights' precision.
GEMMs pay compute and weight streaming one after the other: timed on an H100, one
layer's GEMMs at 128 to 2048 tokens take about the sum of the two, not their maximum
(benchmarks/gpu/roofline.py).
Mixture-of-experts layers cost more per token than their FLOPs say: every token is
routed to k experts, and each routed copy is dispatched to its expert, multiplied in a
grouped GEMM of many small, skinny expert GEMMs, and combined back. That cost is paid
per routed token in proportion to the hidden size, on the memory side, at a fitted
`dispatch_bytes` per hidden element (an effective figure: it folds the grouped GEMMs'
lower efficiency into the traffic, so it is far above the bytes dispatch moves). The
experts are spread over a replica's GPUs (expert parallel), so each GPU handles its
share of the routed tokens.
Everything is per GPU: a tensor-parallel replica shards weights, heads and KV over its
GPUs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from tokenfactory.catalog import Catalog, Gpu, Model, Precision
from tokenfactory.catalog.schema import BYTES_PER_PARAM
from tokenfactory.perf.shape import (
    active_params,
    embedding_params,
    kv_elements_per_token,
    total_params,
)

ACTIVATION_BYTES = 2  # activations travel in bf16 between layers
HEAD_BYTES_PER_PARAM = 2  # the output head stays in bf16 in quantised checkpoints
ALLREDUCE_LATENCY_S = 8e-6  # one small all-reduce over NVLink, launch included
MEMORY_RESERVE = 0.05  # share of HBM kept for activations and the engine's workspace


@dataclass(frozen=True, slots=True)
class Efficiency:
    """Achieved fractions of peak and fixed costs of one engine kind.

    compute is the achieved fraction of the dense peak by GEMMs at bf16 and fp8;
    fp4_compute that of the FP4 peak; attention_compute that of the bf16 peak by attention
    math (None: the same as compute). dispatch_bytes is what one routed token costs in
    each MoE layer, as HBM bytes per hidden element (0: nothing beyond its FLOPs).
    """

    compute: float
    memory: float
    step_overhead_s: float
    seq_overhead_s: float
    fp4_compute: float | None = None
    attention_compute: float | None = None
    dispatch_bytes: float = 0.0
    # Host time per step (scheduling, sampling bookkeeping, responses), which an engine that
    # overlaps it with the GPU hides; and the time each all-reduce of a tensor-parallel step
    # loses when kernels are launched one by one, without CUDA graphs: the ranks' launch
    # queues drift apart and every collective waits for the last rank. Engines that overlap
    # their host work also capture their steps in CUDA graphs, so only the others pay it.
    host_step_s: float = 0.0
    eager_allreduce_s: float = 0.0

    @property
    def attention(self) -> float:
        """The achieved fraction of the bf16 peak by attention math."""
        return self.compute if self.attention_compute is None else self.attention_compute

    def compute_at(self, precision: str) -> float:
        """The achieved fraction of peak of GEMMs at a precision."""
        if precision == "fp4" and self.fp4_compute is not None:
            return self.fp4_compute
        return self.compute


@dataclass(frozen=True, slots=True)
class Deployment:
    """A model on a GPU kind at a precision and tensor-parallel degree."""

    model: Model
    gpu: Gpu
    precision: Precision
    tensor_parallel: int = 1
    kv_precision: Precision | None = None
    memory_utilization: float = 0.9
    memory_of: Literal["total", "free"] = "total"  # vLLM's share of all HBM; TRT-LLM's of free
    overlap_scheduling: bool = True  # host work of step n+1 runs while the GPU runs step n

    @property
    def kv_bytes_per_element(self) -> float:
        """KV cache element size: the model precision, never below fp8."""
        kv = self.kv_precision or ("fp8" if self.precision == "fp4" else self.precision)
        return BYTES_PER_PARAM[kv]


@dataclass(frozen=True, slots=True)
class Batch:
    """What one step processes, as sums the simulator keeps up to date cheaply.

    prefill_tokens: new prompt tokens in this step; prefill_pairs: (query, key) pairs
    those tokens attend to (chunk x earlier context + chunk^2 / 2 per sequence);
    prefill_context: KV tokens the chunks read; decode_seqs and decode_context: sequences
    decoding one token and the sum of their context lengths; sampled: sequences that emit
    a token (decodes plus prefills that finish their prompt).
    """

    prefill_tokens: int = 0
    prefill_pairs: float = 0.0
    prefill_context: float = 0.0
    decode_seqs: int = 0
    decode_context: float = 0.0
    sampled: int = 0


class PerfModel:
    """Step time and KV capacity of one replica; constants are folded once here."""

    def __init__(self, d: Deployment, eff: Efficiency) -> None:
        m, g, tp = d.model, d.gpu, d.tensor_parallel
        self.deployment = d
        self.efficiency = eff
        bpp = BYTES_PER_PARAM[d.precision]
        flops = g.tflops(d.precision) * 1e12 * eff.compute_at(d.precision)
        # Attention math, and the output head, run in bf16 even when weights are quantised.
        bf16_flops = g.bf16_tflops * 1e12 * eff.compute
        attention_flops = g.bf16_tflops * 1e12 * eff.attention
        bandwidth = g.hbm_tb_s * 1e12 * eff.memory
        head = m.vocab_size * m.hidden_size
        embedding = 0 if m.tied_embeddings else head  # looked up, not read whole
        experts = _expert_params(m)
        body = total_params(m) - embedding - experts - head
        head_bpp = max(bpp, HEAD_BYTES_PER_PARAM)
        self._dense_weight_s = (body * bpp + head * head_bpp) / tp / bandwidth
        self._expert_weight_s = experts * bpp / tp / bandwidth
        self._experts_active_share = m.experts_active / m.experts if m.is_moe else 0.0
        self._linear_s_per_token = 2 * (active_params(m) - head) / tp / flops + _dispatch_s(
            m, tp, bandwidth, eff.dispatch_bytes
        )
        self._head_s_per_sample = 2 * head / tp / min(flops, bf16_flops)
        self._attn_s_per_pair, self._window = _attention_cost(m, tp, attention_flops)
        self._windowed_share = m.sliding_window_layers / m.layers
        kv_per_gpu = _kv_per_gpu_elements(m, tp, context=4096) * d.kv_bytes_per_element
        self.kv_bytes_per_token = kv_per_gpu
        self._kv_s_per_token = kv_per_gpu / bandwidth
        link = g.scaleup_gb_s * 1e9
        # Two all-reduces per layer (after attention and after the FFN), each a ring that
        # moves 2 (tp - 1) / tp of the activations over the link.
        self._allreduce_s_per_token = (
            0.0 if tp == 1 else 2 * 2 * (tp - 1) / tp * m.hidden_size * ACTIVATION_BYTES / link
        )
        self._allreduce_fixed_s = 0.0 if tp == 1 else 2 * m.layers * ALLREDUCE_LATENCY_S
        self._host_s = eff.host_step_s
        self._eager_s = (0 if tp == 1 else 2 * m.layers) * eff.eager_allreduce_s
        self._layers = m.layers
        tables = embedding_params(m)  # input embedding and head: neither is quantised
        self.weight_bytes_per_gpu = ((total_params(m) - tables) * bpp + tables * head_bpp) / tp
        hbm, weights = g.hbm_gb * 1e9, self.weight_bytes_per_gpu
        if d.memory_of == "free":  # a share of what the weights and workspace leave
            kv_bytes = (hbm * (1 - MEMORY_RESERVE) - weights) * d.memory_utilization
        else:  # a share of the whole GPU, weights included
            kv_bytes = hbm * (d.memory_utilization - MEMORY_RESERVE) - weights
        self.kv_capacity_tokens = max(0, int(kv_bytes / kv_per_gpu))

    def step_time(self, b: Batch) -> float:
        """Seconds one engine step takes for this batch."""
        tokens = b.prefill_tokens + b.decode_seqs
        if tokens == 0:
            return 0.0
        weight_s = self._dense_weight_s
        if self._experts_active_share:
            # Experts a batch touches: each token picks k of E, so a big batch reads them all.
            touched = 1.0 - (1.0 - self._experts_active_share) ** tokens
            weight_s += self._expert_weight_s * touched
        linear_s = tokens * self._linear_s_per_token + b.sampled * self._head_s_per_sample
        pairs = b.prefill_pairs + b.decode_context
        if self._window:
            capped = min(b.decode_context, b.decode_seqs * self._window)
            pairs = pairs * (1 - self._windowed_share) + capped * self._windowed_share
        attn_s = pairs * self._attn_s_per_pair
        kv_s = (b.prefill_context + b.decode_context + tokens) * self._kv_s_per_token
        comm_s = self._allreduce_fixed_s + tokens * self._allreduce_s_per_token * self._layers
        overhead_s = self.efficiency.step_overhead_s + self.efficiency.seq_overhead_s * (b.sampled)
        gpu_s = linear_s + weight_s + max(attn_s, kv_s) + comm_s + overhead_s
        if self.deployment.overlap_scheduling:
            # Its host time hides behind the GPU's step. Only engines that do not overlap
            # identify `host_step_s` (the MLPerf v4.1 rows), and an overlapping runtime's
            # host work is another program's: their 5 ms is no floor for these steps.
            return gpu_s
        return gpu_s + self._host_s + self._eager_s

    def prefill_token_s(self) -> float:
        """Marginal seconds one more prompt token adds to a step (compute bound)."""
        return self._linear_s_per_token + self._allreduce_s_per_token * self._layers

    def work_s(self, prompt_tokens: int, cached_tokens: int, output_tokens: int) -> float:
        """Replica seconds a request costs at the margin of a full batch.

        Prefill pays its tokens' compute and attention; decode pays each token's compute
        and the context it reads. Weight reads are shared by the batch, so they are
        idle-time, not any one request's work.
        """
        new = prompt_tokens - cached_tokens
        prefill_pairs = new * cached_tokens + new * new / 2
        decode_pairs = output_tokens * (prompt_tokens + output_tokens / 2)
        per_pair = max(self._attn_s_per_pair, self._kv_s_per_token)
        return (
            (new + output_tokens) * self._linear_s_per_token
            + output_tokens * self._head_s_per_sample
            + prefill_pairs * self._attn_s_per_pair
            + decode_pairs * per_pair
        )

    def fits(self) -> bool:
        """Whether the weights leave any room for KV cache on these GPUs."""
        return self.kv_capacity_tokens > 0


def _expert_params(m: Model) -> int:
    if not m.is_moe:
        return 0
    return (m.layers - m.dense_layers) * m.experts * 3 * m.hidden_size * m.moe_intermediate_size


def _dispatch_s(m: Model, tp: int, bandwidth: float, bytes_per_element: float) -> float:
    """Seconds per token of routing it through the MoE layers, on one GPU of the replica.

    The k routed copies of a token each cost `bytes_per_element` x hidden in every MoE
    layer. Expert parallel spreads the routed copies over the replica's GPUs.
    """
    if not m.is_moe:
        return 0.0
    routed = (m.layers - m.dense_layers) * m.experts_active * m.hidden_size
    return routed * bytes_per_element / tp / bandwidth


def _attention_cost(m: Model, tp: int, flops: float) -> tuple[float, int]:
    """Seconds per (query, key) pair summed over layers, and the sliding window if any."""
    heads = max(1, m.attention_heads // tp)
    if m.attention == "mla":
        # Absorbed MLA: scores against the latent plus rope key, values from the latent.
        per_pair = 2 * heads * (m.kv_lora_rank + m.qk_rope_head_dim) + 2 * heads * m.kv_lora_rank
    else:
        per_pair = 4 * heads * m.head_dim
    return per_pair * m.layers / flops, m.sliding_window


def _kv_per_gpu_elements(m: Model, tp: int, context: int) -> float:
    """KV elements per token on one GPU: heads shard over TP, an MLA latent does not."""
    per_token = kv_elements_per_token(m, context)
    if m.attention == "mla":
        return per_token
    return per_token * max(1, m.kv_heads // tp) / m.kv_heads


def deployment(
    catalog: Catalog,
    model: str,
    gpu: str,
    precision: Precision,
    tensor_parallel: int,
    engine: str,
    kv_precision: Precision | None = None,
    memory_utilization: float | None = None,
    overlap_scheduling: bool = True,
) -> Deployment:
    """A deployment with the engine kind's memory split from the catalog."""
    kind = catalog.engine(engine)
    return Deployment(
        catalog.model(model),
        catalog.gpu(gpu),
        precision,
        tensor_parallel,
        kv_precision,
        memory_utilization if memory_utilization is not None else kind.kv_memory,
        kind.kv_memory_of,
        overlap_scheduling,
    )
