"""The frontier: more clients, more tokens per GPU, fewer per user; Pareto marks; the chart."""

from __future__ import annotations

import json
from itertools import pairwise
from pathlib import Path

import pytest

from tokenfactory.catalog import Catalog
from tokenfactory.config import load_scenario
from tokenfactory.errors import ConfigError
from tokenfactory.sim.build import build
from tokenfactory.sim.frontier import default_concurrency, pareto, sweep

SCENARIO = """\
[hardware]
gpu = "H100-SXM"
gpus = 1
[model]
name = "llama-3.1-8b"
precision = "fp8"
[engine]
kind = "vllm"
max_num_seqs = 64
[workload]
arrival = "offline"
requests = 10
input_tokens = 512
output_tokens = 128
"""
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def scenario(tmp_path: Path) -> Path:
    path = tmp_path / "small.toml"
    path.write_text(SCENARIO)
    return path


def test_more_clients_more_tokens_per_gpu_fewer_per_user(scenario: Path, catalog: Catalog) -> None:
    loaded = load_scenario(scenario, catalog)
    setup, _ = build(loaded, catalog)
    f = sweep(loaded, setup, [1, 8, 32, 128])
    per_gpu = [p.tokens_per_s_per_gpu for p in f.points]
    per_user = [p.tokens_per_s_per_user for p in f.points]
    users = [u for u in per_user if u is not None]
    assert len(users) == len(per_gpu)
    assert all(a < b for a, b in pairwise(per_gpu))
    assert all(a > b for a, b in pairwise(users))
    assert [p.requests for p in f.points] == [200, 200, 256, 1024]  # max(8 x clients, 200)
    assert [p.requests_completed for p in f.points] == [200, 200, 256, 1024]
    # one GPU of one kind: cost per token falls as tokens per GPU rise
    costs = [p.cost_per_million_tokens or 0.0 for p in f.points]
    assert all(a > b for a, b in pairwise(costs))
    assert f.pareto == [0, 1, 2, 3]  # each trades speed per user for tokens per GPU


def test_default_sweep_doubles_up_to_twice_the_batch_slots(
    scenario: Path, catalog: Catalog
) -> None:
    setup, _ = build(load_scenario(scenario, catalog), catalog)
    assert default_concurrency(setup) == [1, 2, 4, 8, 16, 32, 64, 128]


def test_pareto_keeps_the_points_no_other_beats() -> None:
    points: list[tuple[float | None, float]] = [
        (60.0, 100.0),  # 0: fastest per user
        (50.0, 300.0),  # 1
        (50.0, 200.0),  # 2: beaten by 1 (same per user, less per GPU)
        (40.0, 250.0),  # 3: beaten by 1 on both
        (20.0, 500.0),  # 4: most per GPU
        (20.0, 500.0),  # 5: equal to 4: neither beats the other
        (None, 900.0),  # 6: no decode, left out
        (10.0, 400.0),  # 7: beaten by 4
    ]
    assert pareto(points) == [0, 1, 4, 5]
    assert pareto([]) == []
    assert pareto([(1.0, 1.0)]) == [0]
    # float noise is not a difference
    assert pareto([(62.605410928525856, 8.0), (62.60541092852604, 15.0)]) == [1]


def test_cli_writes_json_and_a_png(run, scenario: Path, tmp_path: Path) -> None:
    out = tmp_path / "charts"
    r = run("frontier", str(scenario), "--concurrency", "1,8,64", "--out", str(out), "--json")
    assert r.code == 0, r.err
    data = json.loads(r.out)
    assert [p["concurrency"] for p in data["points"]] == [1, 8, 64]
    assert set(data) == {"points", "pareto"}
    keys = {"tokens_per_s_per_gpu", "tokens_per_s_per_user", "ttft_p50_ms", "ttft_p99_ms"}
    assert keys | {"cost_per_million_tokens", "tokens_per_mw"} <= set(data["points"][0])
    assert json.loads((out / "frontier.json").read_text()) == data
    png = (out / "frontier.png").read_bytes()
    assert png.startswith(PNG_MAGIC) and len(png) > 1000
    assert "frontier.png" in r.err


def test_cli_table_marks_the_pareto_points(run, scenario: Path) -> None:
    r = run("frontier", str(scenario), "--concurrency", "1,16")
    assert r.code == 0, r.err
    assert "llama-3.1-8b fp8 on 1 x H100-SXM, vllm TP1" in r.out
    assert "Pareto" in r.out and "*" in r.out


@pytest.mark.parametrize(
    ("value", "message"),
    [("1,x", "'x' is not an integer"), ("0", "0 is not between 1 and")],
)
def test_cli_bad_concurrency_is_one_line(run, scenario: Path, value: str, message: str) -> None:
    r = run("frontier", str(scenario), "--concurrency", value)
    assert r.code == 2 and message in r.err and r.out == ""


def test_a_workload_without_lengths_is_named(tmp_path: Path, catalog: Catalog) -> None:
    text = SCENARIO.split("[workload]")[0] + "[workload.sessions]\ncount = 2\n"
    path = tmp_path / "sessions.toml"
    path.write_text(text)
    loaded = load_scenario(path, catalog)
    setup, _ = build(loaded, catalog)
    with pytest.raises(ConfigError, match=r"sessions.toml:\d+: \[workload\] input_tokens:"):
        sweep(loaded, setup, [1])
