"""`simulate --out` and `plan --out`: JSON as --json prints it, PNG charts, one HTML page."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread

from tokenfactory import render_charts as charts
from tokenfactory.render_plan import TOP_MISSES, TOP_ROWS
from tokenfactory.report_html import Chart, simulation_page

# A name with HTML's special characters: the page must show it escaped.
SCENARIO_NAME = "mix<&>.toml"
SCENARIO = """\
[hardware]
gpu = "H100-SXM"
gpus = 2

[model]
name = "llama-3.1-8b"
precision = "fp8"

[engine]
kind = "vllm"
max_num_seqs = 32

[workload]
arrival = "poisson"
requests = 240
qps = 12.0
input_tokens = 512
output_tokens = { dist = "lognormal", mean = 96, max = 400 }
seed = 5

[[workload.mix]]
tier = "realtime"
share = 0.3

[[workload.mix]]
tier = "standard"
share = 0.4

[[workload.mix]]
tier = "flex"
share = 0.2

[[workload.mix]]
tier = "batch"
share = 0.1

[scheduler]
policy = "value"
"""
DEMAND = """\
[search]
gpus = ["H100-SXM", "H200-SXM"]
max_gpus = 4
tensor_parallel = [1, 2]
policies = ["fcfs", "value"]

[objectives]
realtime = 0.99
standard = 0.95

[model]
name = "llama-3.1-8b"
precision = "fp8"

[engine]
kind = "vllm"
max_num_seqs = 16

[workload]
arrival = "poisson"
requests = 120
qps = 2.0
input_tokens = 256
output_tokens = 64
seed = 3

[[workload.mix]]
tier = "realtime"
share = 0.3

[[workload.mix]]
tier = "standard"
share = 0.7
"""
SIM_FILES = {"summary.json", "latency.png", "throughput.png", "pnl.png", "report.html"}
PLAN_FILES = {"plan.json", "plan.png", "summary.json", "frontier.json", "frontier.png"}
PLAN_FILES |= {"pnl.png", "report.html"}


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def usd(value: float) -> str:
    """Dollars as the page shows them: four places, thousands separated."""
    return f"{'-' if value < 0 else ''}${abs(value):,.4f}"


def assert_png(path: Path, height_in: float) -> None:
    """A PNG of WIDTH x height inches at DPI, with something drawn on it."""
    image = imread(path)
    assert image.shape[:2] == (round(height_in * charts.DPI), round(charts.WIDTH * charts.DPI))
    assert np.ptp(image[..., :3]) > 0.5, f"{path.name} is blank"


def test_simulate_out_writes_the_summary_the_charts_and_a_page(run, tmp_path: Path) -> None:
    out = tmp_path / "report"
    r = run("simulate", str(write(tmp_path, SCENARIO_NAME, SCENARIO)), "--json", "--out", str(out))
    assert r.code == 0, r.err
    data = json.loads(r.out)
    assert {p.name for p in out.iterdir()} == SIM_FILES  # no staging folder left behind
    assert json.loads((out / "summary.json").read_text()) == data
    assert set(data["per_tier"]) == {"realtime", "standard", "flex", "batch"}
    assert all(f"wrote {out / name}" in r.err for name in SIM_FILES)

    assert_png(out / "latency.png", charts.LATENCY_HEIGHT)
    assert_png(out / "throughput.png", charts.THROUGHPUT_HEIGHT)
    assert_png(out / "pnl.png", charts.PNL_HEIGHT)

    page = (out / "report.html").read_text()
    for name in ("latency.png", "throughput.png", "pnl.png"):
        assert f'<img src="{name}"' in page
    assert data["profit_usd"] > 0
    assert f"<td>profit</td><td>{usd(data['profit_usd'])}</td>" in page
    assert f"<td>{usd(data['per_tier']['realtime']['revenue_usd'])}</td>" in page
    assert "mix&lt;&amp;&gt;.toml" in page and SCENARIO_NAME not in page
    assert "http://" not in page and "https://" not in page and "<script" not in page


def test_simulate_json_carries_each_tiers_cost_and_the_idle_cost(run, tmp_path: Path) -> None:
    data = json.loads(run("simulate", str(write(tmp_path, "s.toml", SCENARIO)), "--json").out)
    tiers = data["per_tier"].values()
    assert all(t["cost_usd"] > 0 for t in tiers) and data["idle_cost_usd"] >= 0
    attributed = sum(t["cost_usd"] for t in tiers) + data["idle_cost_usd"]
    assert attributed == pytest.approx(data["cost_usd"], rel=1e-9)
    assert sum(t["profit_usd"] for t in tiers) - data["idle_cost_usd"] == pytest.approx(
        data["profit_usd"], rel=1e-9
    )


def test_plan_out_writes_the_ranking_and_the_best_fleets_frontier_and_pnl(
    run, tmp_path: Path
) -> None:
    out = tmp_path / "plan"
    r = run("plan", str(write(tmp_path, "demand.toml", DEMAND)), "--json", "--out", str(out))
    assert r.code == 0, r.err
    data = json.loads(r.out)
    assert {p.name for p in out.iterdir()} == PLAN_FILES
    assert json.loads((out / "plan.json").read_text()) == data
    best = data["best"]
    # The best fleet simulated again for its report is the run the search ranked.
    summary = json.loads((out / "summary.json").read_text())
    assert summary["profit_usd"] == pytest.approx(best["profit_usd"], rel=1e-12)
    frontier = json.loads((out / "frontier.json").read_text())
    assert len(frontier["points"]) >= 2 and frontier["pareto"]

    bars = len(data["candidates"][:TOP_ROWS]) + len(data["misses"][:TOP_MISSES])
    assert_png(out / "plan.png", charts.candidates_height(bars))
    assert_png(out / "frontier.png", charts.FRONTIER_HEIGHT)
    assert_png(out / "pnl.png", charts.PNL_HEIGHT)

    page = (out / "report.html").read_text()
    for name in ("plan.png", "frontier.png", "pnl.png"):
        assert f'<img src="{name}"' in page
    assert f"<td>profit</td><td>{usd(best['profit_usd'])}</td>" in page
    assert f"The best fleet: {best['name']}" in page
    assert data["reason"] in page  # plain text: nothing in it needs escaping
    assert page.count("<td>yes</td>") == len(data["candidates"][:TOP_ROWS])


def test_plan_out_without_a_feasible_fleet_shows_the_closest_misses(run, tmp_path: Path) -> None:
    text = DEMAND.replace("[model]", "[tiers.realtime]\nttft_ms = 1\n\n[model]")
    out = tmp_path / "plan"
    r = run("plan", str(write(tmp_path, "demand.toml", text)), "--json", "--out", str(out))
    assert r.code == 0, r.err
    data = json.loads(r.out)
    assert data["best"] is None and data["misses"]
    assert {p.name for p in out.iterdir()} == {"plan.json", "plan.png", "report.html"}
    assert_png(out / "plan.png", charts.candidates_height(len(data["misses"][:TOP_MISSES])))
    page = (out / "report.html").read_text()
    assert "No fleet of at most 4 GPUs meets every objective" in page
    assert "The best fleet" not in page and page.count("<td>no</td>") == len(
        data["misses"][:TOP_MISSES]
    )


@pytest.mark.parametrize("command", ["simulate", "plan"])
def test_an_out_that_is_a_file_is_refused_before_any_work(
    run, tmp_path: Path, command: str
) -> None:
    source = write(tmp_path, "in.toml", SCENARIO if command == "simulate" else DEMAND)
    taken = write(tmp_path, "taken", "keep me")
    r = run(command, str(source), "--out", str(taken))
    assert r.code == 2 and r.out == ""
    assert r.err == f"error: --out {taken} is a file, not a folder\n"
    assert taken.read_text() == "keep me"


def test_an_out_under_a_file_is_refused_and_nothing_is_made(run, tmp_path: Path) -> None:
    write(tmp_path, "taken", "keep me")
    out = tmp_path / "taken" / "report"
    r = run("simulate", str(write(tmp_path, "s.toml", SCENARIO)), "--out", str(out))
    assert r.code == 2 and r.out == ""
    assert r.err == f"error: --out {out}: {tmp_path / 'taken'} is a file, not a folder\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.toml", "taken"]


def test_a_failure_while_writing_leaves_the_folder_as_it_was(run, tmp_path: Path) -> None:
    out = tmp_path / "report"
    (out / "pnl.png").mkdir(parents=True)  # in the way of one file: none is written
    (out / "notes.txt").write_text("mine")
    r = run("simulate", str(write(tmp_path, "s.toml", SCENARIO)), "--out", str(out))
    assert r.code == 2
    assert r.err == f"error: --out {out}: pnl.png is not a file\n"
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt", "pnl.png"]
    assert (out / "notes.txt").read_text() == "mine"


def test_a_missing_out_folder_is_made_with_its_parents(run, tmp_path: Path) -> None:
    out = tmp_path / "a" / "b"
    r = run("simulate", str(write(tmp_path, "s.toml", SCENARIO)), "--out", str(out))
    assert r.code == 0, r.err
    assert {p.name for p in out.iterdir()} == SIM_FILES


def test_plan_out_without_lengths_leaves_the_frontier_out_and_says_why(run, tmp_path: Path) -> None:
    plain = DEMAND[DEMAND.index("[workload]") :]
    sessions = "[workload.sessions]\ncount = 8\nrate = 1.0\nturns = 3\nthink_s = 2\n"
    text = DEMAND.replace(plain, sessions)
    out = tmp_path / "plan"
    r = run("plan", str(write(tmp_path, "demand.toml", text)), "--out", str(out))
    assert r.code == 0, r.err
    assert {p.name for p in out.iterdir()} == PLAN_FILES - {"frontier.json", "frontier.png"}
    page = (out / "report.html").read_text()
    assert "No frontier for the best fleet: " in page and "input_tokens" in page
    assert '<img src="pnl.png"' in page and "frontier.png" not in page


def test_the_page_escapes_every_value() -> None:
    summary = _tiny_summary()
    page = simulation_page("<b>x</b> & co", summary, [Chart('a".png', "<i>caption</i>")])
    assert "<b>" not in page and "&lt;b&gt;x&lt;/b&gt; &amp; co" in page
    assert 'src="a&quot;.png"' in page and "&lt;i&gt;caption&lt;/i&gt;" in page


def _tiny_summary() -> dict[str, object]:
    stats = {"mean": 1.0, "p50": 1.0, "p90": 1.0, "p99": 1.0}
    tier = {
        "requests": 1, "requests_completed": 1, "refused": 0, "abandoned": 0,
        "ttft_ms": stats, "tpot_ms": stats, "e2e_ms": stats, "slo_attainment": 1.0,
        "goodput_tokens_per_s": 1.0, "revenue_usd": 1.0, "cost_usd": 0.5, "profit_usd": 0.5,
    }  # fmt: skip
    return {
        "requests": 1, "requests_completed": 1, "duration_s": 1.0, "output_tokens_per_s": 1.0,
        "output_tokens_per_s_per_gpu": 1.0, "input_tokens_per_s": 1.0, "ttft_ms": stats,
        "tpot_ms": stats, "e2e_ms": stats, "busy_share": 1.0, "energy_kwh": 0.0,
        "cost_usd": 0.6, "idle_cost_usd": 0.1, "revenue_usd": 1.0, "profit_usd": 0.4,
        "cost_per_million_tokens": 1.0, "tokens_per_mw": 1.0, "per_tier": {"standard": tier},
    }  # fmt: skip
