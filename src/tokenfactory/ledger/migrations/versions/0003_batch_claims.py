"""Batch claims: the gateway running a batch, and until when its lease holds.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from tokenfactory.ledger.schema import UTCDateTime

revision = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Add `claimed_by` and `lease_until` to batches (no claim: any gateway may run it)."""
    with op.batch_alter_table("batches") as batch:
        batch.add_column(sa.Column("claimed_by", sa.String(64), nullable=True))
        batch.add_column(sa.Column("lease_until", UTCDateTime(), nullable=True))


def downgrade() -> None:
    """Drop the two columns."""
    with op.batch_alter_table("batches") as batch:
        batch.drop_column("lease_until")
        batch.drop_column("claimed_by")
