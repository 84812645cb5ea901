"""The planner: the best fleet meets the objectives and earns most; clear misses and errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tokenfactory.catalog import Catalog
from tokenfactory.errors import ConfigError
from tokenfactory.render_plan import reason
from tokenfactory.sim.plan import Plan, _smallest, load_demand, search

# Line numbers in the error expectations below are those of this text.
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
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "demand.toml"
    path.write_text(text)
    return path


def plan_of(tmp_path: Path, catalog: Catalog, text: str = DEMAND) -> Plan:
    return search(load_demand(write(tmp_path, text), catalog), catalog)


def test_the_best_fleet_meets_the_objectives_and_earns_most(
    tmp_path: Path, catalog: Catalog
) -> None:
    plan = plan_of(tmp_path, catalog)
    assert plan.candidates, plan.misses
    best = plan.candidates[0]
    for c in plan.candidates:
        assert c.feasible and c.shortfall == 0
        assert c.slo_attainment["realtime"] >= 0.99 and c.slo_attainment["standard"] >= 0.95
        assert c.gpu in {"H100-SXM", "H200-SXM"} and c.gpus <= 4
        assert c.gpus % c.tensor_parallel == 0 and c.policy in {"fcfs", "value"}
    profits = [c.profit_usd for c in plan.candidates]
    assert best.profit_usd == max(profits) and profits == sorted(profits, reverse=True)
    assert best.profit_per_hour == pytest.approx(best.revenue_per_hour - best.cost_per_hour)
    # light demand: one GPU is enough, and the cheapest kind that serves it wins
    assert (best.gpus, best.tensor_parallel) == (1, 1)
    h100 = float(catalog.gpu("H100-SXM").rent_per_gpu_hour)
    h200 = float(catalog.gpu("H200-SXM").rent_per_gpu_hour)
    assert best.gpu == ("H100-SXM" if h100 < h200 else "H200-SXM")
    assert reason(plan).startswith(f"{best.gpu} x1 TP1 with {best.policy} meets realtime")


def test_cli_json_and_files(run, tmp_path: Path) -> None:
    out = tmp_path / "out"
    r = run("plan", str(write(tmp_path, DEMAND)), "--json", "--out", str(out))
    assert r.code == 0, r.err
    data = json.loads(r.out)
    assert data["best"] == data["candidates"][0]
    assert data["reason"].startswith(data["best"]["gpu"])
    assert {"gpu", "gpus", "tensor_parallel", "policy", "profit_per_hour"} <= set(data["best"])
    assert json.loads((out / "plan.json").read_text()) == data
    png = (out / "plan.png").read_bytes()
    assert png.startswith(PNG_MAGIC) and len(png) > 1000


def test_impossible_objectives_report_no_feasible_fleet(
    run, tmp_path: Path, catalog: Catalog
) -> None:
    text = DEMAND + "\n[tiers.realtime]\nttft_ms = 1\n"
    plan = plan_of(tmp_path, catalog, text)
    assert plan.candidates == [] and plan.misses
    assert all(m.slo_attainment["realtime"] < 0.99 for m in plan.misses)
    assert reason(plan).startswith("No fleet of at most 4 GPUs meets every objective")
    r = run("plan", str(write(tmp_path, text)))
    assert r.code == 0, r.err
    assert "No fleet meets the objectives; closest misses" in r.out
    data = json.loads(run("plan", str(write(tmp_path, text)), "--json").out)
    assert data["best"] is None and data["candidates"] == [] and data["misses"]


def test_a_model_that_fits_nowhere_is_skipped(tmp_path: Path, catalog: Catalog) -> None:
    text = DEMAND.replace("llama-3.1-8b", "llama-3.1-405b").replace("max_gpus = 4", "max_gpus = 2")
    plan = plan_of(tmp_path, catalog, text)
    assert plan.candidates == [] and plan.misses == []
    assert "H100-SXM TP1: the model does not fit" in plan.skipped
    assert "none could be simulated" in reason(plan)


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            "max_gpus = 4",
            "max_gpus = 0",
            "demand.toml:3: [search] max_gpus: input should be greater",
        ),
        ('"H200-SXM"]', '"H300"]', "demand.toml:2: [search] gpus: entry 2: unknown GPU 'H300'"),
        ("policies", "policys", "demand.toml:5: [search] unknown key 'policys'"),
        ("realtime = 0.99", "realtime = 1.5", "demand.toml:8: [objectives] realtime: must be"),
        ("standard = 0.95", "gold = 0.95", "demand.toml:9: [objectives] gold: unknown tier"),
        ('precision = "fp8"', 'precison = "fp8"', "demand.toml:13: [model] unknown key"),
        ("qps = 2.0", "qps = -2.0", "demand.toml:21: [workload] qps: must be > 0"),
        ("[engine]", "[hardware]\ngpu = 'B200'\n[engine]", "demand.toml:15: [hardware] is chosen"),
        ('kind = "vllm"', 'kind = "vllm"\ntensor_parallel = 2', "demand.toml:17: [engine] tens"),
    ],
)
def test_bad_demand_files_name_file_and_line(
    tmp_path: Path, catalog: Catalog, old: str, new: str, expected: str
) -> None:
    assert old in DEMAND
    with pytest.raises(ConfigError) as caught:
        load_demand(write(tmp_path, DEMAND.replace(old, new, 1)), catalog)
    message = caught.value.message
    assert message.startswith(str(tmp_path)) and expected in message, message


def test_cli_bad_demand_exits_2(run, tmp_path: Path) -> None:
    r = run("plan", str(write(tmp_path, DEMAND.replace("max_gpus = 4", "max_gpus = 'x'"))))
    assert r.code == 2 and r.err.startswith(f"error: {tmp_path}") and "demand.toml:3: " in r.err


def test_malformed_toml_names_the_line(tmp_path: Path, catalog: Catalog) -> None:
    with pytest.raises(ConfigError, match=r"demand.toml:5: not valid TOML"):
        load_demand(write(tmp_path, DEMAND.replace("tensor_parallel = [1, 2]", "tp = [")), catalog)


@pytest.mark.parametrize("least", [1, 2, 3, 5, 6, 7, 8])
def test_smallest_doubles_then_bisects(least: int) -> None:
    asked: list[int] = []

    def ok(m: int) -> bool:
        asked.append(m)
        return m >= least

    assert _smallest(ok, 8) == least
    assert len(asked) <= 7 and len(set(asked)) == len(asked)
    assert _smallest(lambda m: False, 8) is None
