"""Gateway leases: each journal row names its gateway, and gateways keep a lease.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from tokenfactory.ledger.schema import UTCDateTime

revision = "0005"
down_revision: str | None = "0004"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Create `gateways` and add `owner` to `open_requests` (rows already there: none)."""
    op.create_table(
        "gateways",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("started_at", UTCDateTime(), nullable=False),
        sa.Column("lease_until", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_gateways")),
    )
    with op.batch_alter_table("open_requests") as table:
        table.add_column(sa.Column("owner", sa.String(64), nullable=True))
        table.create_index(op.f("ix_open_requests_owner"), ["owner"])


def downgrade() -> None:
    """Drop the owners and the leases."""
    with op.batch_alter_table("open_requests") as table:
        table.drop_index(op.f("ix_open_requests_owner"))
        table.drop_column("owner")
    op.drop_table("gateways")
