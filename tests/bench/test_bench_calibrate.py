"""calibrate --from: a bench run on slower hardware than the model thinks refits the model."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tokenfactory.perf.efficiency import efficiency_for

WORKLOAD = """
[workload]
arrival = "concurrency"
concurrency = 8
requests = 48
input_tokens = 100
output_tokens = 32
"""


def test_a_run_at_half_speed_pulls_the_fitted_model_to_half_speed(
    run: Callable[..., Any], slow_twin: str, scenario: Callable[..., Path], tmp_path: Path
) -> None:
    out, params = tmp_path / "run", tmp_path / "fitted.toml"
    result = run("bench", str(scenario(WORKLOAD)), "--url", slow_twin, "--out", str(out))
    assert result.code == 0, result.err
    before = json.loads(run("calibrate", "--from", str(out), "--report", "--json").out)
    assert before["engine"] == "vllm"
    error_before = before["rows"][0]["errors"]["output_tokens_per_s"]
    assert error_before > 0.6  # the built-in model thinks the H100 twice as fast
    fitted = run(
        "calibrate", "--from", str(out), "--iterations", "12", "--to", str(params), "--json"
    )
    assert fitted.code == 0, fitted.err
    after = json.loads(fitted.out)
    error_after = after["rows"][0]["errors"]["output_tokens_per_s"]
    assert abs(error_after) < 0.2
    assert abs(after["rows"][0]["errors"]["tpot_ms_mean"]) < 0.25
    prior, p = efficiency_for("vllm"), after["parameters"]
    # Slower: less of the peak reached, or more fixed cost per step.
    assert p["memory"] < prior.memory or p["step_overhead_s"] > prior.step_overhead_s
    stored = efficiency_for("vllm", params)
    assert stored.memory == pytest.approx(p["memory"], abs=1e-4)
    assert stored.step_overhead_s == pytest.approx(p["step_overhead_s"], abs=1e-6)
    assert efficiency_for("vllm") == prior  # the built-in defaults are left alone
