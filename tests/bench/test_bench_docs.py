"""docs/bench.md stays true: every option of the command is documented, its files load."""

from __future__ import annotations

import re
from pathlib import Path

import typer

from tokenfactory.catalog import Catalog
from tokenfactory.cli import app
from tokenfactory.config import load_scenario
from tokenfactory.config.factory import load_factory
from tokenfactory.sim.build import build

DOC = Path(__file__).resolve().parents[2] / "docs" / "bench.md"


def test_every_option_of_bench_and_calibrate_from_is_documented() -> None:
    text = DOC.read_text()
    command = typer.main.get_command(app)
    bench = command.commands["bench"]  # type: ignore[attr-defined]
    options = [o for p in bench.params for o in p.opts if o.startswith("--")]
    assert len(options) > 10
    missing = [o for o in options if o != "--help" and o not in text]
    assert not missing
    assert "calibrate --from" in text and "--to FILE" in text


def test_the_notes_factory_and_scenario_load(catalog: Catalog, tmp_path: Path) -> None:
    blocks = re.findall(r"```toml\n(.*?)```", DOC.read_text(), re.S)
    assert len(blocks) == 2
    factory, scenario = tmp_path / "factory.toml", tmp_path / "scenario.toml"
    factory.write_text(blocks[0])
    scenario.write_text(blocks[1])
    assert [r.name for r in load_factory(factory, catalog).replicas] == ["twin-0", "twin-1"]
    setup, _ = build(load_scenario(scenario, catalog), catalog)
    assert setup.replicas == 2 and setup.policy == "value"
