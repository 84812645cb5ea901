"""Engines per dialect and the migration runner.

SQLite: one file in WAL mode (readers never block the writer), foreign keys on, a busy
timeout, and transactions begun by us: `BEGIN IMMEDIATE` for writes, so a writer takes the
database's write lock up front instead of failing to upgrade a read lock halfway.
PostgreSQL: a pooled psycopg engine with pre-ping; its row locks make the budget UPDATE and
the ON CONFLICT insert race-free on their own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, create_engine, event, make_url, text
from sqlalchemy.pool import StaticPool

from tokenfactory.errors import BadInput

BUSY_TIMEOUT_S = 30
WRITE = "tf_write"  # execution option marking a connection that will write
MIGRATIONS = Path(__file__).resolve().parent / "migrations"
# Any constant: serialises concurrent `migrate()` calls on one PostgreSQL database.
_MIGRATE_LOCK_ID = 0x7F_7465_6E6C


def make_engine(url: str) -> Engine:
    """An engine configured for the ledger on SQLite or PostgreSQL."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return _sqlite_engine(url, parsed.database)
    if backend == "postgresql":
        if parsed.get_driver_name() != "psycopg":
            parsed = parsed.set(drivername="postgresql+psycopg")
        return create_engine(parsed, pool_pre_ping=True, pool_size=10, max_overflow=20)
    raise BadInput(f"ledger database must be sqlite or postgresql, not {backend!r}")


def _sqlite_engine(url: str, database: str | None) -> Engine:
    memory = database in (None, "", ":memory:")
    # An in-memory database lives in one connection; share it (the write lock guards it).
    pool: dict[str, Any] = {"poolclass": StaticPool} if memory else {}
    engine = create_engine(
        url, connect_args={"check_same_thread": False, "timeout": BUSY_TIMEOUT_S}, **pool
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Stop pysqlite from issuing its own BEGIN/COMMIT; `_on_begin` does it instead.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        if not memory:
            cursor.execute("PRAGMA journal_mode=WAL")
            # In WAL mode NORMAL syncs at checkpoints, not at every commit: a crashed process
            # loses nothing (the WAL is in the OS's cache); only a power cut could lose the
            # last commits. FULL costs an fsync per request on the floor.
            cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_S * 1000}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        writes = conn.get_execution_options().get(WRITE, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if writes else "BEGIN")

    return engine


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Run the Alembic migrations up to `revision` in one transaction."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.execution_options(**{WRITE: True}).begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _MIGRATE_LOCK_ID})
        config.attributes["connection"] = conn
        command.upgrade(config, revision)
