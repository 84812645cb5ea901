"""The step-time roofline and KV capacity, against figures computed by hand from the catalog."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from tokenfactory.catalog import Catalog
from tokenfactory.perf.model import (
    ALLREDUCE_LATENCY_S,
    MEMORY_RESERVE,
    Batch,
    Deployment,
    Efficiency,
    PerfModel,
)
from tokenfactory.perf.shape import active_params, total_params

EFF = Efficiency(compute=0.5, memory=0.8, step_overhead_s=0.004, seq_overhead_s=1e-5)


def model_on(catalog: Catalog, model: str, gpu: str = "H100-SXM", **kw: Any) -> PerfModel:
    return PerfModel(Deployment(catalog.model(model), catalog.gpu(gpu), **kw), EFF)


def decode(n: int, context: float) -> Batch:
    return Batch(0, 0.0, 0.0, n, context, n)


def prefill(tokens: int, done: int = 0) -> Batch:
    return Batch(tokens, tokens * done + tokens * tokens / 2, done, 0, 0.0, 1)


@pytest.mark.parametrize(
    ("model", "gpu", "precision", "tp"),
    [
        ("llama-3.1-8b", "H100-SXM", "bf16", 1),
        ("qwen3-30b-a3b", "H100-SXM", "fp8", 1),
        ("gpt-oss-20b", "H200-SXM", "fp8", 1),
        ("deepseek-v3", "H200-SXM", "fp8", 8),
        ("llama-3.1-70b", "H100-SXM", "bf16", 4),
    ],
)
def test_step_time_grows_with_every_field_of_the_batch(
    catalog: Catalog, model: str, gpu: str, precision: str, tp: int
) -> None:
    perf = model_on(catalog, model, gpu, precision=precision, tensor_parallel=tp)
    base = Batch(512, 512 * 1000 + 512**2 / 2, 1000, 32, 32 * 2000.0, 33)
    t0 = perf.step_time(base)
    assert t0 > 0
    assert perf.step_time(Batch()) == 0.0
    for f in dataclasses.fields(Batch):
        for factor in (2, 8):
            bigger = dataclasses.replace(base, **{f.name: getattr(base, f.name) * factor})
            assert perf.step_time(bigger) >= t0, f.name
    # More tokens of either kind always cost more.
    assert perf.step_time(dataclasses.replace(base, prefill_tokens=4096)) > t0
    assert perf.step_time(dataclasses.replace(base, decode_seqs=256, sampled=257)) > t0
    ts = [perf.step_time(decode(n, n * 1500.0)) for n in (1, 2, 8, 64, 256)]
    assert ts == sorted(ts) and ts[0] < ts[-1]


def test_decode_at_batch_one_is_memory_bound(catalog: Catalog) -> None:
    perf = model_on(catalog, "llama-3.1-8b", precision="bf16")
    m, g = perf.deployment.model, perf.deployment.gpu
    bandwidth = g.hbm_tb_s * 1e12 * EFF.memory
    flops = g.bf16_tflops * 1e12 * EFF.compute
    # Every weight but the input embedding (a lookup) is read once; the KV of the context too.
    head = m.vocab_size * m.hidden_size
    weight_bytes = (total_params(m) - head) * 2
    kv_bytes_per_token = 2 * m.kv_heads * m.head_dim * m.layers * 2
    overhead = EFF.step_overhead_s + EFF.seq_overhead_s
    context = 1000
    linear = 2 * (active_params(m) - head) / flops + 2 * head / flops  # one token, sampled
    reads = weight_bytes / bandwidth + (context + 1) * kv_bytes_per_token / bandwidth
    t = perf.step_time(decode(1, context))
    assert t == pytest.approx(linear + reads + overhead, rel=1e-12)
    # ... which is about the weight bytes over the bandwidth, plus the fixed costs.
    assert t == pytest.approx(perf.weight_bytes_per_gpu / bandwidth + overhead, rel=0.1)
    # Twice the bandwidth halves the reads; half the compute barely moves it.
    faster_memory = PerfModel(perf.deployment, dataclasses.replace(EFF, memory=1.6))
    slower_compute = PerfModel(perf.deployment, dataclasses.replace(EFF, compute=0.25))
    assert faster_memory.step_time(decode(1, context)) == pytest.approx(
        linear + reads / 2 + overhead, rel=1e-12
    )
    assert slower_compute.step_time(decode(1, context)) == pytest.approx(t, rel=0.05)


def test_large_prefill_is_compute_bound(catalog: Catalog) -> None:
    perf = model_on(catalog, "llama-3.1-8b", precision="bf16")
    m, g = perf.deployment.model, perf.deployment.gpu
    flops = g.bf16_tflops * 1e12 * EFF.compute
    bandwidth = g.hbm_tb_s * 1e12 * EFF.memory
    tokens = 8192
    head = m.vocab_size * m.hidden_size  # the output head runs for the one sampled token
    linear = 2 * (active_params(m) - head) * tokens / flops + 2 * head / flops
    weights = (total_params(m) - head) * 2 / bandwidth  # streamed once, after the math
    attention = tokens * tokens / 2 * 4 * m.attention_heads * m.head_dim * m.layers / flops
    overhead = EFF.step_overhead_s + EFF.seq_overhead_s
    t = perf.step_time(prefill(tokens))
    assert t == pytest.approx(linear + weights + attention + overhead, rel=1e-12)
    assert 1.0 < t / (2 * active_params(m) * tokens / flops) < 1.25
    # Compute is almost all of it: half the compute doubles the math, not the weights.
    slower_compute = PerfModel(perf.deployment, dataclasses.replace(EFF, compute=0.25))
    assert slower_compute.step_time(prefill(tokens)) == pytest.approx(
        2 * (linear + attention) + weights + overhead, rel=1e-12
    )
    assert weights < 0.05 * t


def test_tensor_parallel_halves_per_gpu_time_and_adds_all_reduce(catalog: Catalog) -> None:
    one = model_on(catalog, "llama-3.1-8b", precision="bf16")
    two = model_on(catalog, "llama-3.1-8b", precision="bf16", tensor_parallel=2)
    m, g = one.deployment.model, one.deployment.gpu
    assert two.weight_bytes_per_gpu == one.weight_bytes_per_gpu / 2
    assert two.kv_bytes_per_token == one.kv_bytes_per_token / 2

    def all_reduce(b: Batch) -> float:
        """What tp=2 adds to half the tp=1 step (weights, heads and KV all shard in two)."""
        overhead = EFF.step_overhead_s + EFF.seq_overhead_s * b.sampled
        return two.step_time(b) - ((one.step_time(b) - overhead) / 2 + overhead)

    fixed = 2 * m.layers * ALLREDUCE_LATENCY_S  # two all-reduces per layer
    small, large = all_reduce(decode(1, 1000)), all_reduce(prefill(4097))
    per_token = (large - small) / 4096
    assert small - per_token == pytest.approx(fixed, rel=1e-6)
    # A ring all-reduce moves 2 (tp - 1) / tp of the activations per GPU, per all-reduce.
    ring = 2 * (2 - 1) / 2 * m.hidden_size * 2 / (g.scaleup_gb_s * 1e9)
    assert m.layers * ring * (1 - 1e-9) <= per_token <= 2 * m.layers * ring * (1 + 1e-9)


def test_kv_capacity_is_what_the_weights_leave_of_usable_memory(catalog: Catalog) -> None:
    m, g = catalog.model("llama-3.1-8b"), catalog.gpu("H100-SXM")
    kv_bytes = 2 * m.kv_heads * m.head_dim * m.layers * 2  # K and V, every layer, bf16
    weights = total_params(m) * 2
    assert weights == pytest.approx(m.total_params_b * 1e9 * 2, rel=0.005)
    for util in (0.9, 0.5):
        perf = PerfModel(Deployment(m, g, "bf16", memory_utilization=util), EFF)
        hbm = g.hbm_gb * 1e9
        expected = (hbm * util - hbm * MEMORY_RESERVE - weights) / kv_bytes
        assert perf.kv_bytes_per_token == kv_bytes
        assert perf.kv_capacity_tokens == int(expected)
        assert perf.fits()
    fp8_kv = PerfModel(Deployment(m, g, "bf16", kv_precision="fp8"), EFF)
    bf16_kv = PerfModel(Deployment(m, g, "bf16"), EFF)
    doubled = 2 * bf16_kv.kv_capacity_tokens
    assert fp8_kv.kv_capacity_tokens in (doubled, doubled + 1)


def test_a_model_that_does_not_fit_has_no_kv_capacity(catalog: Catalog) -> None:
    big = model_on(catalog, "llama-3.1-405b", precision="bf16")
    assert big.weight_bytes_per_gpu > big.deployment.gpu.hbm_gb * 1e9
    assert big.kv_capacity_tokens == 0
    assert not big.fits()
    sharded = model_on(catalog, "llama-3.1-405b", "H200-SXM", precision="fp8", tensor_parallel=8)
    assert sharded.fits() and sharded.kv_capacity_tokens > 100_000


def test_moe_reads_more_experts_as_the_batch_grows(catalog: Catalog) -> None:
    perf = model_on(catalog, "qwen3-30b-a3b", precision="bf16")
    m, g = perf.deployment.model, perf.deployment.gpu
    bandwidth = g.hbm_tb_s * 1e12 * EFF.memory
    experts = m.layers * m.experts * 3 * m.hidden_size * m.moe_intermediate_size  # no dense layers
    other = total_params(m) - m.vocab_size * m.hidden_size - experts
    kv_s = 2 * m.kv_heads * m.head_dim * m.layers * 2 / bandwidth

    flops = g.bf16_tflops * 1e12 * EFF.compute
    head = m.vocab_size * m.hidden_size
    linear_s = 2 * (active_params(m) - head) / flops + 2 * head / flops  # per sampled token

    def touched(n: int) -> float:
        """Share of the experts' weights a decode step of n tokens (no context) reads."""
        rest = n * (kv_s + linear_s) + EFF.step_overhead_s + n * EFF.seq_overhead_s
        return (perf.step_time(decode(n, 0.0)) - rest - other * 2 / bandwidth) / (
            experts * 2 / bandwidth
        )

    shares = [touched(n) for n in (1, 2, 8, 64)]
    share = m.experts_active / m.experts
    assert shares[0] == pytest.approx(share, rel=1e-9)
    for n, s in zip((1, 2, 8, 64), shares, strict=True):
        assert s == pytest.approx(1 - (1 - share) ** n, rel=1e-9)
    assert shares == sorted(shares) and shares[-1] > 0.98


def test_moe_with_every_expert_active_streams_like_a_dense_model(catalog: Catalog) -> None:
    moe = catalog.model("qwen3-30b-a3b")
    every = moe.model_copy(update={"experts_active": moe.experts})
    perf = PerfModel(Deployment(every, catalog.gpu("H100-SXM"), "bf16"), EFF)
    # All experts are read at any batch, so decode time is exactly linear in the batch...
    t1, t2, t3 = (perf.step_time(decode(n, 0.0)) for n in (1, 2, 3))
    assert t3 - t2 == pytest.approx(t2 - t1, rel=1e-9)
    # ... and its fixed part is every weight but the (looked-up) input embedding, once.
    embedding = every.vocab_size * every.hidden_size * 2
    bandwidth = perf.deployment.gpu.hbm_tb_s * 1e12 * EFF.memory
    fixed = (perf.weight_bytes_per_gpu - embedding) / bandwidth + EFF.step_overhead_s
    assert t1 - (t2 - t1) == pytest.approx(fixed, rel=1e-9)
    # With k of E experts a batch reads fewer of them, never more.
    sparse = model_on(catalog, "qwen3-30b-a3b", precision="bf16")
    for n in (1, 8, 64, 512):
        assert sparse.step_time(decode(n, 0.0)) < perf.step_time(decode(n, 0.0))


def test_quantised_weights_keep_the_output_head_and_embedding_in_bf16(catalog: Catalog) -> None:
    m = catalog.model("llama-3.1-8b")
    tables = 2 * m.vocab_size * m.hidden_size  # untied: input embedding and output head
    for precision, bpp in (("fp8", 1.0), ("fp4", 0.5), ("bf16", 2.0)):
        perf = model_on(catalog, "llama-3.1-8b", "B200", precision=precision)
        assert perf.weight_bytes_per_gpu == pytest.approx(
            (total_params(m) - tables) * bpp + tables * 2
        )
        # Sampling one more token multiplies the head at the bf16 peak, whatever the weights.
        sampled = perf.step_time(Batch(0, 0.0, 0.0, 1, 100.0, 1))
        unsampled = perf.step_time(Batch(0, 0.0, 0.0, 1, 100.0, 0))
        head_s = (
            2
            * m.vocab_size
            * m.hidden_size
            / (perf.deployment.gpu.bf16_tflops * 1e12 * EFF.compute)
        )
        assert sampled - unsampled == pytest.approx(head_s + EFF.seq_overhead_s, rel=1e-9)


def test_fp4_gemms_run_at_their_own_fraction_of_the_fp4_peak(catalog: Catalog) -> None:
    slow = dataclasses.replace(EFF, fp4_compute=EFF.compute / 2)
    m, gpu = catalog.model("llama-3.3-70b"), catalog.gpu("B200")
    tokens = 4096
    batch = prefill(tokens)
    same = PerfModel(Deployment(m, gpu, "fp4"), EFF).step_time(batch)
    halved = PerfModel(Deployment(m, gpu, "fp4"), slow).step_time(batch)
    head = m.vocab_size * m.hidden_size
    linear_s = tokens * 2 * (active_params(m) - head) / (gpu.tflops("fp4") * 1e12 * EFF.compute)
    # Halving the fraction doubles the GEMMs' math and nothing else.
    assert halved - same == pytest.approx(linear_s, rel=1e-9)
    for precision in ("fp8", "bf16"):  # other precisions ignore the FP4 fraction
        a = PerfModel(Deployment(m, gpu, precision), EFF).step_time(batch)
        b = PerfModel(Deployment(m, gpu, precision), slow).step_time(batch)
        assert a == b


def test_attention_math_runs_at_its_own_fraction_of_the_bf16_peak(catalog: Catalog) -> None:
    m, gpu = catalog.model("llama-3.1-8b"), catalog.gpu("H100-SXM")
    slow = dataclasses.replace(EFF, attention_compute=EFF.compute / 2)
    batch = prefill(4096, done=8192)  # a long prompt's last chunk: attention-heavy
    same = PerfModel(Deployment(m, gpu, "fp8"), EFF).step_time(batch)
    halved = PerfModel(Deployment(m, gpu, "fp8"), slow).step_time(batch)
    per_pair = 4 * m.attention_heads * m.head_dim * m.layers
    attention_s = batch.prefill_pairs * per_pair / (gpu.bf16_tflops * 1e12 * EFF.compute)
    # Halving the fraction doubles the attention math (compute bound here) and nothing else.
    assert halved - same == pytest.approx(attention_s, rel=1e-9)
    # Decode attention reads the KV cache: memory bound, so its fraction does not matter.
    reads = decode(8, 8 * 2000.0)
    fast_model = PerfModel(Deployment(m, gpu, "fp8"), EFF)
    assert PerfModel(Deployment(m, gpu, "fp8"), slow).step_time(reads) == fast_model.step_time(
        reads
    )


@pytest.mark.parametrize(("model", "tp"), [("qwen3-30b-a3b", 1), ("qwen3-235b-a22b", 8)])
def test_each_routed_token_pays_the_dispatch_cost_shared_by_the_gpus(
    catalog: Catalog, model: str, tp: int
) -> None:
    m, gpu = catalog.model(model), catalog.gpu("H200-SXM")
    routed = dataclasses.replace(EFF, dispatch_bytes=40.0)
    batch = prefill(2048)
    without = PerfModel(Deployment(m, gpu, "fp8", tp), EFF)
    with_cost = PerfModel(Deployment(m, gpu, "fp8", tp), routed)
    # k copies of each token, hidden x 40 bytes each in every MoE layer, spread over tp GPUs.
    bytes_per_token = m.layers * m.experts_active * m.hidden_size * 40.0 / tp
    bandwidth = gpu.hbm_tb_s * 1e12 * EFF.memory
    extra = with_cost.step_time(batch) - without.step_time(batch)
    assert extra == pytest.approx(2048 * bytes_per_token / bandwidth, rel=1e-9)
    assert with_cost.prefill_token_s() - without.prefill_token_s() == pytest.approx(
        bytes_per_token / bandwidth, rel=1e-9
    )


def test_a_dense_model_pays_no_dispatch_cost(catalog: Catalog) -> None:
    m, gpu = catalog.model("llama-3.1-8b"), catalog.gpu("H100-SXM")
    routed = dataclasses.replace(EFF, dispatch_bytes=40.0)
    for batch in (prefill(2048), decode(64, 64 * 1000.0)):
        assert PerfModel(Deployment(m, gpu, "fp8"), routed).step_time(batch) == PerfModel(
            Deployment(m, gpu, "fp8"), EFF
        ).step_time(batch)


def test_host_time_hides_behind_the_gpu_only_where_the_engine_overlaps_it(
    catalog: Catalog,
) -> None:
    host = dataclasses.replace(EFF, host_step_s=0.02, eager_allreduce_s=1e-4)
    m, g = catalog.model("llama-3.1-8b"), catalog.gpu("H100-SXM")

    def step(b: Batch, overlap: bool, tp: int = 1) -> float:
        d = Deployment(m, g, "bf16", tensor_parallel=tp, overlap_scheduling=overlap)
        return PerfModel(d, host).step_time(b)

    gpu = model_on(catalog, "llama-3.1-8b", precision="bf16")
    big, small = prefill(8192), decode(1, 100)
    assert gpu.step_time(big) > 0.02 > gpu.step_time(small)
    # Overlapped: the host's work hides behind the GPU's step, long or short.
    assert step(big, overlap=True) == gpu.step_time(big)
    assert step(small, overlap=True) == gpu.step_time(small)
    # Not overlapped: the GPU idles while the host works, however long the step.
    assert step(big, overlap=False) == pytest.approx(gpu.step_time(big) + 0.02, rel=1e-12)
    assert step(small, overlap=False) == pytest.approx(gpu.step_time(small) + 0.02, rel=1e-12)
    # Tensor parallel without overlap (nor CUDA graphs): each of a step's two all-reduces
    # per layer loses its own part; an overlapping engine's graphs lose none.
    two = model_on(catalog, "llama-3.1-8b", precision="bf16", tensor_parallel=2)
    eager = 0.02 + 2 * m.layers * 1e-4
    assert step(small, overlap=False, tp=2) == pytest.approx(
        two.step_time(small) + eager, rel=1e-12
    )
    assert step(small, overlap=True, tp=2) == two.step_time(small)
