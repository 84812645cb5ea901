"""Fixtures: a twin engine and the gateway over it, on loopback, with a real ledger."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from floor_helpers import PG, Gateway, MakeGateway, factory_toml, floors, twin_app
from servers import serving

from tokenfactory.catalog import Catalog
from tokenfactory.config.factory import load_factory
from tokenfactory.gateway.app import create_app
from tokenfactory.gateway.runtime import build_floor
from tokenfactory.ledger import Ledger


@pytest.fixture
def twin(catalog: Catalog) -> Iterator[str]:
    """One twin engine's base URL."""
    with serving(twin_app(catalog)) as url:
        yield url


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
