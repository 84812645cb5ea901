"""--out: requests.csv, summary.json and latency.png, written and readable."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench_helpers import MODEL
from matplotlib.image import imread

from tokenfactory.bench.files import COLUMNS


def test_out_writes_one_csv_row_per_request_the_summary_and_a_chart(
    run: Callable[..., Any], twin: str, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    result = run(
        "bench",
        "--url",
        twin,
        "--model",
        MODEL,
        "--qps",
        "50",
        "--requests",
        "25",
        "--input-tokens",
        "64",
        "--output-tokens",
        "12",
        "--tiers",
        "realtime=0.4,flex=0.6",
        "--out",
        str(out),
        "--json",
    )
    assert result.code == 0, result.err
    assert result.err.splitlines()[-3:] == [
        f"wrote {out / name}" for name in ("requests.csv", "summary.json", "latency.png")
    ]
    with (out / "requests.csv").open() as f:
        reader = csv.DictReader(f)
        assert tuple(reader.fieldnames or ()) == COLUMNS
        rows = list(reader)
    assert len(rows) == 25 and len({r["id"] for r in rows}) == 25
    assert {r["tier"] for r in rows} == {"realtime", "flex"}
    for r in rows:
        assert r["status"] == "ok" and r["tokens_from"] == "usage"
        assert (int(r["prompt_tokens"]), int(r["completion_tokens"])) == (64, 12)
        assert 0 < float(r["ttft_ms"]) < float(r["e2e_ms"])
        assert float(r["start_s"]) >= float(r["arrival_s"])
    starts = [float(r["start_s"]) for r in rows]
    assert starts == sorted(starts)
    summary = json.loads((out / "summary.json").read_text())
    assert summary == json.loads(result.out)
    assert sum(int(r["completion_tokens"]) for r in rows) == summary["tokens"]["output"]
    image = imread(out / "latency.png")
    assert image.shape[:2] == (495, 1210)  # 11 x 4.5 inches at 110 dpi
    assert image.std() > 0.05  # something was drawn


def test_calibrate_from_a_folder_without_a_summary_is_a_clear_error(
    run: Callable[..., Any], tmp_path: Path
) -> None:
    result = run("calibrate", "--from", str(tmp_path))
    assert result.code == 2
    missing = tmp_path / "summary.json"
    assert (
        result.err
        == f"error: {missing}: cannot read the run's summary (No such file or directory)\n"
    )
