"""The dashboard's batch queue: every tenant's batches that are open or were in the window.

Read in the dashboard's snapshot transaction, from the batch tables themselves: a
batch's counts are its lines by status, as the Batch API reports them to its tenant.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import case, func, or_, select
from sqlalchemy.orm import Session

from tokenfactory.ledger.batch_records import OPEN
from tokenfactory.ledger.schema import BatchLineRow, BatchRow, Tenant

# The page lists at most this many batches, newest first.
BATCHES_LIMIT = 50
# The statuses a batch ends in, and the column that says when.
ENDS = ("completed", "failed", "expired", "cancelled")


@dataclass(frozen=True, slots=True)
class RequestCounts:
    """A batch's lines, as OpenAI's `request_counts`."""

    total: int
    completed: int
    failed: int


@dataclass(frozen=True, slots=True)
class BatchView:
    """One batch as the admin sees it."""

    id: str
    tenant: str
    status: str
    model: str | None  # known once its input was validated
    request_counts: RequestCounts
    progress: float | None  # share of lines no longer pending; None before validation
    created_at: datetime
    expires_at: datetime
    ended_at: datetime | None  # when it reached its final status


def batch_queue(session: Session, since: datetime, limit: int = BATCHES_LIMIT) -> list[BatchView]:
    """Batches open now, created since `since` or ended since then, newest first."""
    ended = [getattr(BatchRow, f"{status}_at") for status in ENDS]
    query = (
        select(BatchRow, Tenant.name)
        .join(Tenant, Tenant.id == BatchRow.tenant_id)
        .where(
            or_(
                BatchRow.status.in_(OPEN),
                BatchRow.created_at >= since,
                *(column >= since for column in ended),
            )
        )
        .order_by(BatchRow.created_at.desc(), BatchRow.id.desc())
        .limit(limit)
    )
    rows = session.execute(query).all()
    counts = _line_counts(session, [batch.id for batch, _ in rows])
    out = []
    for batch, tenant in rows:
        total, completed, failed, pending = counts.get(batch.id, (0, 0, 0, 0))
        out.append(
            BatchView(
                id=batch.id,
                tenant=tenant,
                status=batch.status,
                model=batch.model,
                request_counts=RequestCounts(total, completed, failed),
                progress=(total - pending) / total if total else None,
                created_at=batch.created_at,
                expires_at=batch.expires_at,
                ended_at=getattr(batch, f"{batch.status}_at") if batch.status in ENDS else None,
            )
        )
    return out


def _line_counts(session: Session, ids: list[str]) -> dict[str, tuple[int, int, int, int]]:
    """Per batch: lines in all, completed, failed and still pending."""
    if not ids:
        return {}
    L = BatchLineRow

    def having(status: str) -> Any:
        return func.sum(case((L.status == status, 1), else_=0))

    query = (
        select(L.batch_id, func.count(), having("completed"), having("failed"), having("pending"))
        .where(L.batch_id.in_(ids))
        .group_by(L.batch_id)
    )
    return {
        r[0]: (int(r[1]), int(r[2] or 0), int(r[3] or 0), int(r[4] or 0))
        for r in session.execute(query)
    }
