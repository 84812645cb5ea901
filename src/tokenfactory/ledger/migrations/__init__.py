"""Alembic migrations of the ledger, run by `Ledger.migrate()`."""
