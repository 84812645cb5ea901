"""The `tokenfactory` command as a user runs it: output, JSON, and one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tokenfactory.catalog import Catalog


def test_cost_json_follows_the_inferencemax_formulas(run, catalog: Catalog) -> None:
    r = run("cost", "--gpu", "H100-SXM", "--tokens-per-s-per-gpu", "3000", "--json")
    assert r.code == 0, r.err
    data = json.loads(r.out)
    h100 = catalog.gpu("H100-SXM")
    rent = float(h100.rent_per_gpu_hour)
    assert data["cost_per_hour"] == pytest.approx(rent)
    assert data["cost_per_million_tokens"] == pytest.approx(rent / (3000 * 3600 / 1e6))
    assert data["tokens_per_mw"] == pytest.approx(3000 * 1000 / h100.kw_per_gpu)
    assert data["joules_per_token"] == pytest.approx(h100.kw_per_gpu * 1000 / 3000)
    assert data["revenue_per_hour"] is None and data["margin"] is None
    filled = {f["name"]: f for f in data["filled"]}
    assert filled["rent_per_gpu_hour"]["source"] == h100.sources["rent"]
    assert "kw_per_gpu" in filled and "pue" in filled


def test_cost_with_a_tier_sells_at_the_tier_price(run, catalog: Catalog) -> None:
    args = [
        "cost",
        "--gpu",
        "B200",
        "--gpus",
        "8",
        "--tokens-per-s",
        "40000",
        "--model",
        "llama-3.1-70b",
        "--input-per-output",
        "0",
        "--json",
    ]
    standard = json.loads(run(*args).out)
    realtime = json.loads(run(*args, "--tier", "realtime").out)
    out_price = float(catalog.model("llama-3.1-70b").price_out)
    # 40,000 output tok/s for an hour at the list price
    assert standard["revenue_per_hour"] == pytest.approx(40000 * 3600 / 1e6 * out_price)
    assert realtime["revenue_per_hour"] == pytest.approx(2 * standard["revenue_per_hour"])
    assert realtime["cost_per_hour"] == standard["cost_per_hour"]
    assert realtime["profit_per_hour"] == pytest.approx(
        realtime["revenue_per_hour"] - realtime["cost_per_hour"]
    )
    assert {"name": "tier", "value": "standard", "source": "list price of the model"} in standard[
        "filled"
    ]


def test_cost_owned_with_scenarios(run) -> None:
    r = run(
        "cost",
        "--gpu",
        "H100-SXM",
        "--tokens-per-s-per-gpu",
        "2500",
        "--capex-per-gpu",
        "25000",
        "--years",
        "4",
        "--pue",
        "1.2",
        "--electricity-per-kwh",
        "0.1",
        "--kw-per-gpu",
        "1.3",
        "--utilization",
        "0.6",
        "--price-in",
        "0.2",
        "--price-out",
        "0.8",
        "--scenarios",
        "--json",
    )
    assert r.code == 0, r.err
    data = json.loads(r.out)
    assert data["inputs"]["ownership"] == "owned"
    # capital 25000/(4*8760) + energy: IT 1.3/1.3 kW * (0.3 + 0.7*0.6) * 1.2 PUE * $0.10
    expected = 25000 / (4 * 8760) + 1.0 * (0.3 + 0.7 * 0.6) * 1.2 * 0.1
    assert data["cost_per_hour"] == pytest.approx(expected)
    assert [f["name"] for f in data["filled"]] == [
        "idle_power_fraction",
        "ops_per_gpu_hour",
        "input_per_output",
    ]
    names = [s["name"] for s in data["scenarios"]]
    assert "electricity +30%" in names and len(names) == 6
    changes = [abs(s["change_per_hour"]) for s in data["scenarios"]]
    assert changes == sorted(changes, reverse=True)


def test_cost_table_for_people(run) -> None:
    r = run(
        "cost",
        "--gpu",
        "MI355X",
        "--tokens-per-s-per-gpu",
        "5000",
        "--model",
        "gpt-oss-120b",
        "--scenarios",
    )
    assert r.code == 0, r.err
    for words in (
        "cost per 1M tokens",
        "tokens/s per MW",
        "profit per hour",
        "Scenarios",
        "Filled in from the catalog",
        "rent_per_gpu_hour",
    ):
        assert words in r.out


def test_user_catalog_file_changes_the_answer(run, tmp_path: Path) -> None:
    mine = tmp_path / "mine.toml"
    mine.write_text('[[gpu]]\nid = "H100-SXM"\nrent_per_gpu_hour = "3.00"\n')
    r = run(
        "cost",
        "--gpu",
        "H100-SXM",
        "--tokens-per-s-per-gpu",
        "1000",
        "--catalog",
        str(mine),
        "--json",
    )
    assert json.loads(r.out)["cost_per_hour"] == 3.0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--gpu", "H100", "--tokens-per-s", "5"], "unknown GPU 'H100'; did you mean H100-SXM"),
        (["--gpu", "H100-SXM", "--tokens-per-s", "0"], "--tokens-per-s: Input should be greater"),
        (["--gpu", "H100-SXM", "--tokens-per-s", "-3"], "--tokens-per-s: Input should be greater"),
        (["--gpu", "H100-SXM", "--tokens-per-s", "5", "--gpus", "0"], "--gpus: Input should be"),
        (
            ["--gpu", "H100-SXM", "--tokens-per-s", "5", "--utilization", "1.5"],
            "--utilization: Input should be less than or equal to 1",
        ),
        (
            ["--gpu", "H100-SXM", "--tokens-per-s", "5", "--utilization", "0"],
            "--utilization: Input should be greater than 0",
        ),
        (["--gpu", "H100-SXM"], "give exactly one of --tokens-per-s-per-gpu and --tokens-per-s"),
        (
            ["--gpu", "H100-SXM", "--tokens-per-s", "5", "--model", "lama-3.1-8b"],
            "unknown model 'lama-3.1-8b'; did you mean llama-3.1-8b",
        ),
        (
            ["--gpu", "H100-SXM", "--tokens-per-s", "5", "--model", "qwen3-8b", "--tier", "gold"],
            "unknown tier 'gold'",
        ),
        (["--gpu", "H100-SXM", "--tokens-per-s", "5", "--tier", "flex"], "--tier needs --model"),
        (
            ["--gpu", "H100-SXM", "--tokens-per-s", "5", "--price-in", "1"],
            "--price-in and --price-out go together",
        ),
        (["--gpu", "H100-SXM", "--tokens-per-s", "5", "--scenarios"], "--scenarios needs prices"),
        (["--gpu", "H100-SXM", "--tokens-per-s", "abc"], "'--tokens-per-s'"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(run, args: list[str], message: str) -> None:
    r = run("cost", *args)
    assert r.code == 2
    assert r.out == ""
    assert r.err.startswith("error: ") and r.err.count("\n") == 1, r.err
    assert message in r.err


def test_malformed_catalog_file_is_one_line_with_file_and_line(run, tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[[gpu]]\nid = "H100-SXM"\nhbm_gb = = 3\n')
    r = run("catalog", "--catalog", str(bad))
    assert r.code == 2
    assert f"error: {bad}: not valid TOML" in r.err and "line 3" in r.err


def test_catalog_lists_and_shows(run, catalog: Catalog) -> None:
    r = run("catalog")
    assert r.code == 0
    for entry_id in [*catalog.gpus, *catalog.models, *catalog.tiers]:
        assert entry_id in r.out
    shown = json.loads(run("catalog", "show", "qwen3-235b-a22b", "--json").out)
    assert shown["experts"] == 128 and shown["sources"]["config"]
    r = run("catalog", "show", "H200-SXM")
    assert "hbm_tb_s" in r.out and "specs:" in r.out
    listing = json.loads(run("catalog", "--json").out)
    assert len(listing["gpus"]) == len(catalog.gpus)


def test_catalog_show_unknown_id(run) -> None:
    r = run("catalog", "show", "gpt-oss-12b")
    assert r.code == 2
    assert "unknown catalog id 'gpt-oss-12b'; did you mean gpt-oss-120b" in r.err


def test_installed_command_prints_no_traceback() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "tokenfactory", "cost", "--gpu", "X9", "--tokens-per-s", "1"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and proc.stderr.startswith("error: unknown GPU 'X9'")
