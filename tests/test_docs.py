"""The docs stay true: their examples load and run as written."""

from __future__ import annotations

import re
from pathlib import Path

from tokenfactory.catalog import Catalog
from tokenfactory.config import load_scenario, load_scenario_text
from tokenfactory.sim.build import build

ROOT = Path(__file__).resolve().parent.parent


def test_scenario_doc_example_is_the_tested_example_and_loads(catalog: Catalog) -> None:
    doc = (ROOT / "docs" / "scenario.md").read_text()
    block = re.search(r"```toml\n(.*?)```", doc, re.S)
    assert block is not None
    example = ROOT / "tests" / "config" / "data" / "example.toml"
    assert block.group(1) == example.read_text()
    loaded = load_scenario_text(block.group(1), "scenario.md", catalog, base_dir=example.parent)
    assert loaded.scenario.hardware.gpu == "H200-SXM"


def test_every_example_scenario_builds(catalog: Catalog) -> None:
    examples = sorted((ROOT / "examples").glob("*.toml"))
    assert examples
    for path in examples:
        text = path.read_text()
        if "[search]" in text:  # plan demand files are read by `plan`, not `simulate`
            continue
        setup, _ = build(load_scenario(path, catalog), catalog)
        assert setup.replicas >= 1, path


def test_readme_shows_the_two_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "make run" in readme and "make test" in readme
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in ci
