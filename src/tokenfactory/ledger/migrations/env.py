"""Alembic environment: migrates the connection `Ledger.migrate()` hands over."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from tokenfactory.ledger.schema import Base


def run() -> None:
    """Apply migrations on the caller's connection, inside the caller's transaction."""
    connection = context.config.attributes.get("connection")
    if not isinstance(connection, Connection):
        raise RuntimeError("run ledger migrations through Ledger.migrate()")
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite cannot ALTER much
    )
    with context.begin_transaction():
        context.run_migrations()


run()
