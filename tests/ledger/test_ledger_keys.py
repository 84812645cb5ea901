"""Schema migrations, tenants and keys."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, select, text

from tokenfactory.errors import BadInput
from tokenfactory.ledger import KeyNotFound, Ledger, hash_secret
from tokenfactory.ledger.schema import ApiKey, Base


def test_migrate_is_idempotent_and_matches_the_models(bare_ledger: Ledger) -> None:
    bare_ledger.migrate()
    bare_ledger.migrate()
    names = set(inspect(bare_ledger.engine).get_table_names())
    assert {"tenants", "api_keys", "usage_events", "alembic_version"} <= names
    with bare_ledger.engine.connect() as conn:
        assert conn.scalar(text("SELECT version_num FROM alembic_version")) == "0005"
        # The migration creates exactly what the models describe.
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []


def test_sqlite_pragmas(tmp_path: Path) -> None:
    ledger = Ledger.sqlite(tmp_path / "wal.db")
    with ledger.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30_000
    ledger.close()


def test_create_find_and_revoke(ledger: Ledger) -> None:
    record, secret = ledger.create_key(
        "acme",
        default_tier="flex",
        allowed_tiers=["flex", "batch"],
        budget_usd=Decimal("12.5"),
        tokens_per_minute=1000,
    )
    assert secret.startswith("tf-") and len(secret) == 43
    assert record.prefix == secret[:8]
    assert record.tenant == "acme" and record.default_tier == "flex"
    assert record.allowed_tiers == ("flex", "batch")
    assert record.allows("batch") and not record.allows("realtime")
    assert record.budget_micros == 12_500_000 and record.spent_micros == 0
    assert record.tokens_per_minute == 1000 and not record.is_admin and record.active
    assert ledger.find_key(secret) == record
    assert ledger.find_key(secret + "x") is None
    assert ledger.find_key("") is None

    revoked = ledger.revoke_key(record.id)
    assert revoked.revoked_at is not None and not revoked.active
    assert ledger.find_key(secret) is None  # revoked keys no longer authenticate
    assert ledger.revoke_key(record.id).revoked_at == revoked.revoked_at
    with pytest.raises(KeyNotFound):
        ledger.revoke_key(999)


def test_secret_is_stored_only_as_its_hash(ledger: Ledger) -> None:
    _, secret = ledger.create_key("acme")
    with ledger.engine.connect() as conn:
        stored = conn.execute(select(ApiKey.key_hash, ApiKey.prefix)).one()
        dump = " ".join(
            str(value) for row in conn.execute(text("SELECT * FROM api_keys")) for value in row
        )
    assert stored == (hash_secret(secret), secret[:8])
    assert secret not in dump and secret[8:] not in dump


def test_admin_flag_tenants_and_listing(ledger: Ledger) -> None:
    admin, admin_secret = ledger.create_key("ops", is_admin=True)
    first, _ = ledger.create_key("acme")
    second, _ = ledger.create_key("acme", budget_usd=None)
    found = ledger.find_key(admin_secret)
    assert found is not None and found.is_admin
    assert first.tenant_id == second.tenant_id != admin.tenant_id
    assert [k.id for k in ledger.list_keys()] == [admin.id, first.id, second.id]
    assert first.allowed_tiers is None and first.allows("realtime")
    assert ledger.remaining_budget(first.id) is None


@pytest.mark.parametrize(
    "kwargs",
    [
        {"tenant": " "},
        {"tenant": "a", "default_tier": "realtime", "allowed_tiers": ["flex"]},
        {"tenant": "a", "budget_usd": Decimal("-1")},
        {"tenant": "a", "budget_usd": Decimal("0.0000001")},
        {"tenant": "a", "tokens_per_minute": 0},
        {"tenant": "a", "allowed_tiers": ["a,b"], "default_tier": "a,b"},
    ],
)
def test_bad_key_settings_are_refused(ledger: Ledger, kwargs: dict[str, object]) -> None:
    with pytest.raises(BadInput):
        ledger.create_key(**kwargs)  # type: ignore[arg-type]
    assert ledger.list_keys() == []
