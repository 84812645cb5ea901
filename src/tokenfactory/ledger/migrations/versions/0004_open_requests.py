"""Write-ahead metering: running requests' journal rows, and the `interrupted` outcome.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from tokenfactory.ledger.schema import UTCDateTime

revision = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None

# Written out rather than imported from the models, as in 0001.
OLD_OUTCOMES = (
    "'ok', 'client_cancelled', 'preempted_resumed', 'engine_error', 'refused', 'abandoned'"
)
NEW_OUTCOMES = OLD_OUTCOMES + ", 'interrupted'"


def _outcomes(allowed: str) -> None:
    # SQLite cannot alter a CHECK constraint: batch mode copies the table under the new one.
    with op.batch_alter_table("usage_events", recreate="auto") as table:
        table.drop_constraint(op.f("ck_usage_events_outcome"), type_="check")
        table.create_check_constraint(op.f("ck_usage_events_outcome"), f"outcome IN ({allowed})")


def upgrade() -> None:
    """Create `open_requests` and allow the `interrupted` outcome."""
    op.create_table(
        "open_requests",
        sa.Column("request_id", sa.String(128), nullable=False),
        sa.Column("key_id", sa.Integer(), nullable=False),
        sa.Column("reserved_micros", sa.BigInteger(), nullable=False),
        sa.Column("event", sa.Text(), nullable=False),
        sa.Column("opened_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("request_id", name=op.f("pk_open_requests")),
        sa.ForeignKeyConstraint(
            ["key_id"], ["api_keys.id"], name=op.f("fk_open_requests_key_id_api_keys")
        ),
    )
    op.create_index(op.f("ix_open_requests_key_id"), "open_requests", ["key_id"])
    _outcomes(NEW_OUTCOMES)


def downgrade() -> None:
    """Drop the journal and the outcome (fails while interrupted events exist)."""
    _outcomes(OLD_OUTCOMES)
    op.drop_table("open_requests")
