"""Every ledger test runs on SQLite and on the PostgreSQL server of this machine.

PostgreSQL: one fresh database per test session (dropped at the end) and one fresh schema
per test in it. Set TOKENFACTORY_TEST_PG to another server's URL. If it cannot be reached
the PostgreSQL tests fail: they are never skipped.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg
import pytest
from sqlalchemy import make_url

from tokenfactory.ledger import Ledger, Outcome, UsageEvent

PG_URL = os.environ.get("TOKENFACTORY_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _admin_connection() -> psycopg.Connection[Any]:
    try:
        return psycopg.connect(PG_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.fail(
            f"PostgreSQL is not reachable at {PG_URL} ({exc}); the ledger tests need it "
            "(start it, or point TOKENFACTORY_TEST_PG at one)",
            pytrace=False,
        )


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A fresh database for this test session; yields its SQLAlchemy URL."""
    name = f"tf_test_{secrets.token_hex(6)}"
    with _admin_connection() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = make_url(PG_URL).set(drivername="postgresql+psycopg", database=name)
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with _admin_connection() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def bare_ledger(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Ledger]:
    """A ledger on an empty database, not migrated."""
    if request.param == "sqlite":
        ledger = Ledger.sqlite(tmp_path / "ledger.db")
        yield ledger
        ledger.close()
        return
    base: str = request.getfixturevalue("pg_database")
    schema = f"t_{secrets.token_hex(6)}"
    with psycopg.connect(base.replace("+psycopg", ""), autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    # Every connection of this ledger sees only the test's own schema.
    ledger = Ledger(f"{base}?options={quote(f'-csearch_path={schema}')}")
    try:
        yield ledger
    finally:
        ledger.close()
        with psycopg.connect(base.replace("+psycopg", ""), autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture
def ledger(bare_ledger: Ledger) -> Ledger:
    """A migrated, empty ledger."""
    bare_ledger.migrate()
    return bare_ledger


def _make_event(request_id: str, key_id: int, **changes: Any) -> UsageEvent:
    fields: dict[str, Any] = {
        "request_id": request_id,
        "key_id": key_id,
        "model": "llama-3.1-8b",
        "replica": "r1",
        "tier_requested": "standard",
        "tier_served": "standard",
        "input_tokens": 100,
        "output_tokens": 50,
        "started_at": T0,
        "ended_at": T0 + timedelta(seconds=2),
        "outcome": Outcome.OK,
        "revenue_micros": 1_000,
        "cost_micros": 400,
        "work_s": 0.5,
    }
    fields.update(changes)
    return UsageEvent(**fields)


@pytest.fixture
def make_event() -> Callable[..., UsageEvent]:
    """Builds a plausible finished request: (request_id, key_id, **field overrides)."""
    return _make_event
