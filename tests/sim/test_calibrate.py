"""Calibration: each measurement's conditions replayed in the simulator, and the fit."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from tokenfactory.catalog import Catalog
from tokenfactory.perf.measurements import Measurement
from tokenfactory.perf.model import Efficiency, PerfModel
from tokenfactory.sim.calibrate import INPUT_MEAN_OF_CAP, fit, predict, setup_for

START = Efficiency(compute=0.6, memory=0.9, step_overhead_s=2e-4, seq_overhead_s=5e-6)

# An offline row of the kind MLPerf publishes: lengths given as a cap and a mean.
ORCA = Measurement(
    row=1,
    source="test",
    gpu="H100-SXM",
    gpus=2,
    tensor_parallel=2,
    model="llama-2-70b",
    precision="fp8",
    engine="trtllm",
    arrival="offline",
    input_tokens=1024,
    output_tokens=290,
    fixed_lengths=False,
    output_tokens_per_s=20_000.0,
    requests=20_000,
)

# A small, prefill-heavy row that simulates in a blink: its time is mostly GEMM math.
SMALL = Measurement(
    row=1,
    source="test",
    gpu="B200",
    gpus=1,
    tensor_parallel=1,
    model="llama-3.1-8b",
    precision="fp8",
    engine="trtllm",
    arrival="offline",
    input_tokens=2048,
    output_tokens=16,
    fixed_lengths=True,
    output_tokens_per_s=1.0,
    requests=1000,
    max_num_seqs=32,
)


def mean_input(m: Measurement, catalog: Catalog) -> float:
    return float(np.mean([r.input_tokens for r in setup_for(m, START, catalog).workload.initial()]))


def test_a_row_draws_its_published_input_mean_or_a_share_of_its_cap(catalog: Catalog) -> None:
    published = dataclasses.replace(ORCA, input_tokens_mean=222.3)
    assert mean_input(published, catalog) == pytest.approx(222.3, rel=0.05)
    # Without a published mean the lengths stay under the cap around the assumed share.
    assert mean_input(ORCA, catalog) == pytest.approx(INPUT_MEAN_OF_CAP * 1024, rel=0.08)
    lengths = [r.input_tokens for r in setup_for(ORCA, START, catalog).workload.initial()]
    assert max(lengths) <= 1024


def test_a_rows_kv_share_sizes_the_engines_cache(catalog: Catalog) -> None:
    default = setup_for(ORCA, START, catalog).deployment
    assert default.memory_utilization == catalog.engine("trtllm").kv_memory
    smaller = setup_for(dataclasses.replace(ORCA, kv_memory=0.5), START, catalog).deployment
    assert smaller.memory_utilization == 0.5
    assert (
        PerfModel(smaller, START).kv_capacity_tokens < PerfModel(default, START).kv_capacity_tokens
    )


def test_a_rows_engine_overlaps_its_host_work_unless_the_row_says_not(catalog: Catalog) -> None:
    assert setup_for(ORCA, START, catalog).deployment.overlap_scheduling
    eager = dataclasses.replace(ORCA, overlap_scheduling=False)
    assert not setup_for(eager, START, catalog).deployment.overlap_scheduling


def test_fit_moves_host_time_only_where_some_row_did_not_overlap_it(catalog: Catalog) -> None:
    start = dataclasses.replace(START, host_step_s=0.005, eager_allreduce_s=1e-4)
    measured = predict(SMALL, START, catalog).output_tokens_per_s * 0.8
    row = dataclasses.replace(SMALL, output_tokens_per_s=measured)
    overlapped = fit([row], start, catalog, 1, 4)
    assert (overlapped.host_step_s, overlapped.eager_allreduce_s) == (0.005, 1e-4)
    eager = fit([dataclasses.replace(row, overlap_scheduling=False)], start, catalog, 1, 4)
    assert eager.host_step_s != 0.005


def test_fit_leaves_the_fp4_fraction_alone_when_no_row_runs_fp4(catalog: Catalog) -> None:
    start = dataclasses.replace(START, fp4_compute=0.42)
    measured = predict(SMALL, START, catalog).output_tokens_per_s * 0.8
    fitted = fit([dataclasses.replace(SMALL, output_tokens_per_s=measured)], start, catalog, 1, 4)
    assert fitted.fp4_compute == 0.42
    assert fitted != start  # the other parameters did move


def measured_as(row: Measurement, truth: Efficiency, catalog: Catalog) -> Measurement:
    """`row` with the throughput the model predicts under `truth`: data a fit must recover."""
    return dataclasses.replace(
        row, output_tokens_per_s=predict(row, truth, catalog).output_tokens_per_s
    )


def test_fit_finds_a_slower_fp4_fraction_from_an_fp4_row(catalog: Catalog) -> None:
    truth = dataclasses.replace(START, fp4_compute=0.3)
    fp8 = measured_as(SMALL, truth, catalog)
    fp4_row = dataclasses.replace(SMALL, precision="fp4")
    fp4 = measured_as(fp4_row, truth, catalog)
    assert predict(fp4_row, START, catalog).errors()["output_tokens_per_s"] > 0.3  # too fast
    fitted = fit([fp8, fp4], START, catalog, 1, 60)
    assert fitted.fp4_compute is not None and fitted.fp4_compute < 0.45
    for row in (fp8, fp4):
        assert abs(predict(row, fitted, catalog).errors()["output_tokens_per_s"]) < 0.05


def test_fit_takes_the_dispatch_cost_from_moe_rows_and_the_rest_from_dense_ones(
    catalog: Catalog,
) -> None:
    truth = dataclasses.replace(START, dispatch_bytes=60.0)
    dense = measured_as(SMALL, truth, catalog)
    moe_row = dataclasses.replace(SMALL, model="qwen3-30b-a3b")
    moe = measured_as(moe_row, truth, catalog)
    assert predict(moe_row, START, catalog).errors()["output_tokens_per_s"] > 0.2  # too fast
    fitted = fit([dense, moe], START, catalog, 1, 30)
    alone = fit([dense], START, catalog, 1, 30)
    # The dense row alone fixes the shared parameters; the MoE row then only the dispatch cost.
    assert dataclasses.replace(fitted, dispatch_bytes=0.0) == alone
    assert fitted.dispatch_bytes == pytest.approx(60.0, rel=0.05)
    assert abs(predict(moe, fitted, catalog).errors()["output_tokens_per_s"]) < 0.02
