"""Fixtures: a twin engine and the gateway over it, on loopback, with a real ledger."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from servers import serving

from tokenfactory.catalog import Catalog
from tokenfactory.config.factory import load_factory
from tokenfactory.engines.twin_app import create_twin_app
from tokenfactory.gateway.app import create_app
from tokenfactory.gateway.runtime import Floor, build_floor
from tokenfactory.ledger import Ledger
from tokenfactory.perf.efficiency import efficiency_for
from tokenfactory.perf.model import Deployment
from tokenfactory.sim.replica import EngineLimits

ADMIN = "tf-admin-test-key"
PG = os.environ.get("TOKENFACTORY_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432")


def twin_app(catalog: Catalog, speedup: float = 20.0, max_num_seqs: int = 64) -> object:
    """A twin of Llama 3.1 8B on an H100 (vLLM), `speedup` times faster than real time."""
    d = Deployment(catalog.model("llama-3.1-8b"), catalog.gpu("H100-SXM"), "fp8", 1)
    return create_twin_app(d, efficiency_for("vllm"), EngineLimits(max_num_seqs, 8192), speedup)


@pytest.fixture
def twin(catalog: Catalog) -> Iterator[str]:
    """One twin engine's base URL."""
    with serving(twin_app(catalog)) as url:
        yield url


@dataclass
class Gateway:
    """A running gateway, its ledger (opened separately) and a way to make keys."""

    url: str
    ledger: Ledger

    @property
    def v1(self) -> str:
        """The base URL an OpenAI client takes."""
        return self.url + "/v1"

    def key(self, tenant: str = "acme", **options: object) -> str:
        """A new API key's secret."""
        _, secret = self.ledger.create_key(tenant, **options)  # type: ignore[arg-type]
        return secret


def factory_toml(replicas: list[str], policy: str = "value", concurrency: int = 4) -> str:
    """A factory file text with one twin replica per URL."""
    out = [f'[server]\nadmin_key = "{ADMIN}"\n[scheduler]\npolicy = "{policy}"\n']
    for i, url in enumerate(replicas):
        out.append(
            f'[[replicas]]\nname = "twin-{i}"\nengine = "twin"\nurl = "{url}"\n'
            f'model = "llama-3.1-8b"\nserved_model = "llama-3.1-8b"\ngpu = "H100-SXM"\n'
            f'precision = "fp8"\nmax_concurrency = {concurrency}\n'
        )
    return "\n".join(out)


MakeGateway = Callable[..., Gateway]
floors: list[Floor] = []  # the floors of the running gateways, for tests that break engines


@pytest.fixture
def make_gateway(catalog: Catalog, tmp_path: Path) -> Iterator[MakeGateway]:
    """Start gateways over given replicas; all stop at the end of the test."""
    stack: list[object] = []
    ledgers: list[Ledger] = []
    floors.clear()

    def make(
        replicas: list[str] | None = None,
        database: str | None = None,
        text: str | None = None,
        **options: object,
    ) -> Gateway:
        path = tmp_path / f"factory-{len(stack)}.toml"
        path.write_text(text or factory_toml(replicas or [], **options))  # type: ignore[arg-type]
        database = database or f"sqlite:///{tmp_path / 'ledger.db'}"
        floor = build_floor(load_factory(path, catalog), catalog, database)
        floors.append(floor)
        ctx = serving(create_app(floor))
        url = ctx.__enter__()
        stack.append(ctx)
        ledger = Ledger(database)
        ledger.migrate()
        ledgers.append(ledger)
        return Gateway(url, ledger)

    yield make
    for ctx in reversed(stack):
        ctx.__exit__(None, None, None)  # type: ignore[attr-defined]
    for ledger in ledgers:
        ledger.close()


@pytest.fixture
def pg_database() -> Iterator[str]:
    """A fresh PostgreSQL database on this machine's server, dropped afterwards."""
    name = "tf_gateway_" + uuid.uuid4().hex[:12]
    admin = PG.replace("postgresql+psycopg://", "postgresql://") + "/test"
    try:
        conn = psycopg.connect(admin, autocommit=True)
    except psycopg.OperationalError as e:
        raise AssertionError(f"PostgreSQL is not reachable at {PG}: {e}") from e
    with conn:
        conn.execute(f"CREATE DATABASE {name}")
    yield f"{PG}/{name}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
