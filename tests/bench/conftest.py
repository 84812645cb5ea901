"""Fixtures: twin engines and the gateway over them on loopback, scenario files to send."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "gateway"))  # the gateway tests' servers

from floor_helpers import Gateway, factory_toml, twin_app
from servers import serving

from tokenfactory.catalog import Catalog
from tokenfactory.config.factory import load_factory
from tokenfactory.gateway.app import create_app
from tokenfactory.gateway.runtime import build_floor
from tokenfactory.ledger import Ledger

TARGET = """
[hardware]
gpu = "H100-SXM"
gpus = {gpus}

[model]
name = "llama-3.1-8b"
precision = "fp8"

[engine]
kind = "vllm"
max_num_seqs = 64
"""


@pytest.fixture
def twin(catalog: Catalog) -> Iterator[str]:
    """A twin of Llama 3.1 8B on an H100 at 20x real time: its OpenAI base URL."""
    with serving(twin_app(catalog, speedup=20.0)) as url:
        yield url + "/v1"


@pytest.fixture
def scenario(tmp_path: Path) -> Callable[..., Path]:
    """Write a scenario file: the twins' hardware, model and engine (vLLM batching 64, as
    twin_app), and a workload."""

    def write(workload: str, gpus: int = 1) -> Path:
        path = tmp_path / f"scenario-{len(list(tmp_path.glob('scenario-*')))}.toml"
        path.write_text(TARGET.format(gpus=gpus) + workload)
        return path

    return write


@pytest.fixture
def gateway(catalog: Catalog, tmp_path: Path) -> Iterator[Gateway]:
    """The gateway over two twin replicas (20x real time), with a SQLite ledger."""
    with (
        serving(twin_app(catalog, speedup=20.0)) as a,
        serving(twin_app(catalog, speedup=20.0)) as b,
    ):
        path = tmp_path / "factory.toml"
        path.write_text(factory_toml([a, b], concurrency=64))
        database = f"sqlite:///{tmp_path / 'ledger.db'}"
        floor = build_floor(load_factory(path, catalog), catalog, database)
        with serving(create_app(floor)) as url:
            ledger = Ledger(database)
            ledger.migrate()
            try:
                yield Gateway(url, ledger)
            finally:
                ledger.close()


@pytest.fixture
def real_time_twin(catalog: Catalog) -> Iterator[str]:
    """The same twin at real time: what the planner predicts for an H100, unscaled."""
    with serving(twin_app(catalog, speedup=1.0)) as url:
        yield url + "/v1"


@pytest.fixture
def slow_twin(catalog: Catalog) -> Iterator[str]:
    """The same twin at half real time: hardware half as fast as the planner thinks."""
    with serving(twin_app(catalog, speedup=0.5)) as url:
        yield url + "/v1"
