"""--compare-sim: the planner simulates the run's workload on its target; both side by side."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

WORKLOAD = """
[workload]
arrival = "poisson"
requests = 20
qps = 8.0
input_tokens = 200
output_tokens = 24
seed = 4

[workload.agents]
count = 2
steps = 3
system_tokens = 100
task_tokens = 50
tool_output_tokens = 40
call_output_tokens = 10
reasoning_output_tokens = 30
tier = "flex"
"""


def test_compare_sim_prints_prediction_and_measurement_side_by_side(
    run: Callable[..., Any], real_time_twin: str, scenario: Callable[..., Path], tmp_path: Path
) -> None:
    path = scenario(WORKLOAD)
    out = tmp_path / "run"
    result = run("bench", str(path), "--url", real_time_twin, "--compare-sim", "--out", str(out))
    assert result.code == 0, result.err
    assert "the planner's prediction vs this run" in result.out
    header = next(line for line in result.out.splitlines() if "figure" in line)
    assert "predicted" in header and "measured" in header
    assert "flex: SLO attainment" in result.out
    compared = json.loads((out / "summary.json").read_text())["compare_sim"]
    rows = {r["figure"]: r for r in compared["rows"]}
    assert rows["requests completed"]["predicted"] == rows["requests completed"]["measured"] == 26
    # The twin is the planner's own model run in real time: an open loop below capacity
    # serves what is offered, so the two throughputs agree closely.
    throughput = rows["output tokens/s"]
    assert throughput["measured"] == pytest.approx(throughput["predicted"], rel=0.2)
    assert throughput["difference"] == pytest.approx(
        throughput["measured"] / throughput["predicted"] - 1
    )
    # Per-token time comes from the same model; HTTP and a busy machine only add to it.
    tpot = rows["TPOT p50 ms"]
    assert tpot["measured"] >= 0.9 * tpot["predicted"]
    assert compared["predicted"]["per_tier"]["flex"]["requests"] == 2 * 3
