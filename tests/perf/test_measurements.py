"""Measurement files: the calibration set, the held-out set, and what a row may say."""

from __future__ import annotations

from pathlib import Path

import pytest

from tokenfactory.errors import ConfigError
from tokenfactory.perf.measurements import Measurement, builtin_measurements_path, load_measurements

VALIDATION = builtin_measurements_path().with_name("validation.toml")


def conditions(m: Measurement) -> tuple[object, ...]:
    return (
        m.gpu,
        m.gpus,
        m.tensor_parallel,
        m.model,
        m.precision,
        m.engine,
        m.arrival,
        m.input_tokens,
        m.output_tokens,
        m.qps,
    )


def test_held_out_rows_share_no_conditions_with_the_calibration_rows() -> None:
    calibration = load_measurements()
    held_out = load_measurements(VALIDATION)
    assert len(held_out) == 142
    assert not {conditions(m) for m in calibration} & {conditions(m) for m in held_out}
    # The rows added to the shared set: one dense FP4 row, and MoE rows from a later release
    # of the perf overview at (model, GPU, shape) conditions none of the held-out rows run.
    added = [m for m in calibration if m.row > 11]
    assert [m.row for m in calibration if m.precision == "fp4" and m.model == "llama-2-70b"] == [12]
    moe = [m for m in added if m.model == "qwen3-30b-a3b"]
    assert [m.row for m in moe] == list(range(13, len(calibration) + 1))
    assert {m.source for m in moe} == {"trtllm-perf-dev"}
    held_out_shapes = {(m.model, m.gpu, m.input_tokens, m.output_tokens) for m in held_out}
    assert not {(m.model, m.gpu, m.input_tokens, m.output_tokens) for m in moe} & held_out_shapes


def test_a_distribution_row_reads_its_published_mean_and_kv_share(tmp_path: Path) -> None:
    path = tmp_path / "m.toml"
    path.write_text(
        '[[m]]\nsource = "x"\ngpu = "H100-SXM"; gpus = 2; tensor_parallel = 2\n'
        'model = "llama-2-70b"; precision = "fp8"; engine = "trtllm"\n'
        'arrival = "offline"; input_tokens_max = 1024; input_tokens_mean = 222.3\n'
        "output_tokens_mean = 290; kv_memory = 0.9\noutput_tokens_per_s = 24000\n"
    )
    (m,) = load_measurements(path)
    assert (m.input_tokens, m.input_tokens_mean, m.output_tokens) == (1024, 222.3, 290)
    assert not m.fixed_lengths and m.kv_memory == 0.9
    path.write_text(path.read_text().replace('gpu = "H100-SXM"; ', ""))
    with pytest.raises(ConfigError, match="measurement 1: missing key 'gpu'"):
        load_measurements(path)
