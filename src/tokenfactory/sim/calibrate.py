"""Fit the performance model's few parameters to measurements, by simulating each one.

Every measurement is replayed in the simulator (same engine limits, arrivals and
lengths); the fit moves the achieved fractions of peak compute, attention math and
bandwidth (and of the FP4 peak, where a row runs FP4), the fixed step costs and, where a
row runs a mixture-of-experts model, the MoE dispatch cost, shared by every row of one
engine kind, to minimise the squared log error of throughput. No constant per row.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from statistics import median

import numpy as np

from tokenfactory.catalog import Catalog
from tokenfactory.catalog.schema import Precision
from tokenfactory.perf.measurements import Measurement
from tokenfactory.perf.model import Efficiency
from tokenfactory.perf.model import deployment as perf_deployment
from tokenfactory.sim.replica import EngineLimits
from tokenfactory.sim.run import NO_COST, NO_PRICES, UNBOUNDED_TIERS, Setup, simulate
from tokenfactory.workload import Fixed, Ids, Length, LogNormal, TierMix, offline, poisson

# Distribution rows give a cap on input (and its mean where published) and a mean output;
# their shapes are log-normal with the spread of OpenOrca's prompts and reference answers
# (coefficients of variation 0.77 and 0.79). A row without an input mean assumes this
# share of its cap.
INPUT_MEAN_OF_CAP = 0.3
LENGTH_CV = 0.8
OFFLINE_WAVES = 5  # offline rows without a request count run this many full batches
HOST_START_S = 1e-4  # where the fit starts a host time that has no value yet


@dataclass(frozen=True, slots=True)
class Prediction:
    """What the model says for one measurement's conditions."""

    measurement: Measurement
    output_tokens_per_s: float
    ttft_ms_mean: float
    tpot_ms_mean: float

    def errors(self) -> dict[str, float]:
        """Relative errors (predicted / measured - 1) of each measured figure."""
        m = self.measurement
        out = {"output_tokens_per_s": self.output_tokens_per_s / m.output_tokens_per_s - 1}
        if m.ttft_ms_mean:
            out["ttft_ms_mean"] = self.ttft_ms_mean / m.ttft_ms_mean - 1
        if m.tpot_ms_mean:
            out["tpot_ms_mean"] = self.tpot_ms_mean / m.tpot_ms_mean - 1
        return out


def setup_for(m: Measurement, eff: Efficiency, catalog: Catalog, scale: float = 1.0) -> Setup:
    """The simulation that reproduces one measurement's conditions.

    scale < 1 shortens the run (fewer requests) for fitting; reports use 1.
    """
    engine = catalog.engine(m.engine)
    limits = EngineLimits(
        max_num_seqs=m.max_num_seqs or engine.max_num_seqs,
        max_batched_tokens=engine.max_batched_tokens,
        chunked_prefill=engine.chunked_prefill,
        block_size=engine.block_size,
    )
    precision: Precision = m.precision  # type: ignore[assignment]
    deployment = perf_deployment(
        catalog,
        m.model,
        m.gpu,
        precision,
        m.tensor_parallel,
        m.engine,
        memory_utilization=m.kv_memory,
        overlap_scheduling=m.overlap_scheduling,
    )
    replicas = m.gpus // m.tensor_parallel
    inputs: Length
    outputs: Length
    if m.fixed_lengths:
        inputs, outputs = Fixed(m.input_tokens), Fixed(m.output_tokens)
    else:
        mean_input = m.input_tokens_mean or m.input_tokens * INPUT_MEAN_OF_CAP
        inputs = LogNormal(mean_input, m.input_tokens, LENGTH_CV)
        outputs = LogNormal(m.output_tokens, 4 * m.output_tokens, LENGTH_CV)
    requests = m.requests or OFFLINE_WAVES * limits.max_num_seqs * replicas
    requests = max(1000, int(requests * scale))
    rng, ids, mix = np.random.default_rng(1), Ids(), TierMix()
    workload = (
        poisson(m.qps, requests, inputs, outputs, mix, rng, ids)
        if m.arrival == "poisson" and m.qps
        else offline(requests, inputs, outputs, mix, rng, ids)
    )
    return Setup(deployment, eff, limits, replicas, workload, UNBOUNDED_TIERS, NO_PRICES, NO_COST)


def predict(m: Measurement, eff: Efficiency, catalog: Catalog, scale: float = 1.0) -> Prediction:
    """Simulate one measurement's conditions."""
    s = simulate(setup_for(m, eff, catalog, scale)).summary
    return Prediction(m, s["output_tokens_per_s"], s["ttft_ms"]["mean"], s["tpot_ms"]["mean"])


def loss(predictions: Sequence[Prediction], latency_weight: float = 0.0) -> float:
    """Mean squared log error of throughput, plus latency figures at `latency_weight`.

    A served-load row's latency identifies what throughput alone cannot: near saturation
    the batch, and so TTFT and TPOT, follow the fixed part of a step (the host time of an
    engine that does not overlap it), which an offline row barely sees.
    """
    terms: list[float] = []
    for p in predictions:
        for figure, e in p.errors().items():
            weight = 1.0 if figure == "output_tokens_per_s" else latency_weight
            if weight:
                terms.append(weight * math.log1p(e) ** 2)
    return sum(terms) / len(terms)


def fit(
    measurements: Sequence[Measurement],
    start: Efficiency,
    catalog: Catalog,
    scale: float = 0.3,
    iterations: int = 120,
    latency_weight: float = 0.0,
) -> Efficiency:
    """The parameters that make the simulator agree best with the measurements.

    With both dense and MoE rows, the shared fractions and overheads are fitted on the
    dense rows first and the MoE dispatch cost on the MoE rows after: the one parameter
    only MoE rows identify cannot then trade accuracy on dense models for MoE ones.
    """
    moe_rows = [m for m in measurements if catalog.model(m.model).is_moe]
    dense_rows = [m for m in measurements if not catalog.model(m.model).is_moe]
    if not moe_rows or not dense_rows:
        return _fit(measurements, start, catalog, scale, iterations, latency_weight, bool(moe_rows))
    shared = _fit(dense_rows, start, catalog, scale, iterations, latency_weight, False)

    def with_dispatch(x: np.ndarray) -> Efficiency:
        return replace(shared, dispatch_bytes=float(np.exp(x[0])))

    def objective(x: np.ndarray) -> float:
        eff = with_dispatch(x)
        return loss([predict(m, eff, catalog, scale) for m in moe_rows], latency_weight)

    x0 = np.log([shared.dispatch_bytes or DISPATCH_START])
    return with_dispatch(_nelder_mead(objective, x0, iterations))


def _fit(
    measurements: Sequence[Measurement],
    start: Efficiency,
    catalog: Catalog,
    scale: float,
    iterations: int,
    latency_weight: float,
    moe: bool,
) -> Efficiency:
    """Fit every parameter the rows identify at once: the FP4 fraction only where some
    row runs FP4, the host time only where some engine did not overlap it (elsewhere it
    hides behind the GPU's), the MoE dispatch cost only where `moe`."""
    fp4 = any(m.precision == "fp4" for m in measurements)
    host = any(not m.overlap_scheduling for m in measurements)

    def objective(x: np.ndarray) -> float:
        eff = _from_vector(x, start, fp4, host, moe)
        return loss([predict(m, eff, catalog, scale) for m in measurements], latency_weight)

    best = _nelder_mead(objective, _to_vector(start, fp4, host, moe), iterations)
    return _from_vector(best, start, fp4, host, moe)


def report(
    measurements: Sequence[Measurement], eff: Efficiency, catalog: Catalog
) -> tuple[list[Prediction], dict[str, float]]:
    """Each row predicted at full length, and the median absolute error per figure."""
    predictions = [predict(m, eff, catalog) for m in measurements]
    medians: dict[str, float] = {}
    for figure in ("output_tokens_per_s", "ttft_ms_mean", "tpot_ms_mean"):
        errors = [abs(p.errors()[figure]) for p in predictions if figure in p.errors()]
        if errors:
            medians[figure] = median(errors)
    return predictions, medians


# Where a fit without a dispatch cost starts it (the log scale needs > 0): a few times the
# bytes per hidden element that dispatch and combine move.
DISPATCH_START = 20.0


def _to_vector(e: Efficiency, fp4: bool, host: bool, moe: bool) -> np.ndarray:
    values = [e.compute, e.memory, e.step_overhead_s, e.seq_overhead_s, e.attention]
    if fp4:
        values.append(e.compute_at("fp4"))
    if host:  # the log-space fit starts a host time it has never fitted from a small one
        values += [max(e.host_step_s, HOST_START_S), max(e.eager_allreduce_s, HOST_START_S)]
    if moe:
        values.append(e.dispatch_bytes or DISPATCH_START)
    return np.log(values)


def _from_vector(x: np.ndarray, start: Efficiency, fp4: bool, host: bool, moe: bool) -> Efficiency:
    """Parameters from the fit's vector, in `_to_vector`'s order; what it does not hold
    stays as it was."""
    v = iter(float(f) for f in np.exp(x))
    compute, memory = min(next(v), 1.0), min(next(v), 1.0)  # no fraction of peak exceeds 1
    step, seq, attention = next(v), next(v), min(next(v), 1.0)
    fp4_compute = min(next(v), 1.0) if fp4 else start.fp4_compute
    host_step, eager = (next(v), next(v)) if host else (start.host_step_s, start.eager_allreduce_s)
    return Efficiency(
        compute=compute,
        memory=memory,
        step_overhead_s=step,
        seq_overhead_s=seq,
        fp4_compute=fp4_compute,
        attention_compute=attention,
        dispatch_bytes=next(v) if moe else start.dispatch_bytes,
        host_step_s=host_step,
        eager_allreduce_s=eager,
    )


def _nelder_mead(
    f: Callable[[np.ndarray], float], x0: np.ndarray, iterations: int, step: float = 0.3
) -> np.ndarray:
    """Minimise f from x0 with the downhill simplex; enough for a handful of smooth parameters."""
    n = len(x0)
    simplex = [x0] + [x0 + step * np.eye(n)[i] for i in range(n)]
    values = [f(x) for x in simplex]
    for _ in range(iterations):
        order = np.argsort(values)
        simplex, values = [simplex[i] for i in order], [values[i] for i in order]
        centroid = np.mean(simplex[:-1], axis=0)
        worst = simplex[-1]
        reflected = centroid + (centroid - worst)
        fr = f(reflected)
        if fr < values[0]:
            expanded = centroid + 2 * (centroid - worst)
            fe = f(expanded)
            simplex[-1], values[-1] = (expanded, fe) if fe < fr else (reflected, fr)
        elif fr < values[-2]:
            simplex[-1], values[-1] = reflected, fr
        else:
            contracted = centroid + 0.5 * (worst - centroid)
            fc = f(contracted)
            if fc < values[-1]:
                simplex[-1], values[-1] = contracted, fc
            else:  # shrink towards the best point
                simplex = [simplex[0]] + [simplex[0] + 0.5 * (x - simplex[0]) for x in simplex[1:]]
                values = [values[0]] + [f(x) for x in simplex[1:]]
        if max(values) - min(values) < 1e-6:
            break
    best: np.ndarray = simplex[int(np.argmin(values))]
    return best
