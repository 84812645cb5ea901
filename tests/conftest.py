"""Shared fixtures: the built-in catalog, loaded once."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from hypothesis import settings

from tokenfactory.catalog import Catalog, load_catalog

# Property tests check invariants, not speed: on a busy machine (CI shares its two cores)
# a per-example deadline only produces flaky failures.
settings.register_profile("tokenfactory", deadline=None)
settings.load_profile("tokenfactory")


@pytest.fixture(scope="session")
def catalog() -> Catalog:
    return load_catalog()


@dataclass
class CliResult:
    """What one `tokenfactory` run printed and its exit status."""

    code: int
    out: str
    err: str


@pytest.fixture
def run(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Callable[..., CliResult]:
    """Run the `tokenfactory` command in-process, as its entry point does."""
    from tokenfactory.cli import main

    def invoke(*args: str) -> CliResult:
        monkeypatch.setattr(sys, "argv", ["tokenfactory", *args])
        code = 0
        try:
            main()
        except SystemExit as e:
            code = int(e.code or 0)
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return invoke
