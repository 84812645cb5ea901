"""One tenant's usage, for the tenant itself: what its keys used and were charged.

Only the caller's tenant is ever read (the query is keyed by tenant id), so a tenant
cannot see another's usage; attributed cost, margins and replicas stay the factory's.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select

from tokenfactory.ledger.books import Ledger
from tokenfactory.ledger.records import require_utc
from tokenfactory.ledger.schema import UsageRow


@dataclass(frozen=True, slots=True)
class UsageLine:
    """A tenant's totals for one model and served tier."""

    model: str
    tier: str
    requests: int
    input_tokens: int
    cached_tokens: int
    output_tokens: int
    charged_micros: int


def tenant_usage(
    ledger: Ledger, tenant_id: int, since: datetime, until: datetime
) -> list[UsageLine]:
    """The tenant's events that ended in [since, until), summed per model and tier."""
    require_utc("since", since)
    require_utc("until", until)
    query = (
        select(
            UsageRow.model,
            UsageRow.tier_served,
            func.count(),
            func.coalesce(func.sum(UsageRow.input_tokens), 0),
            func.coalesce(func.sum(UsageRow.cached_tokens), 0),
            func.coalesce(func.sum(UsageRow.output_tokens), 0),
            func.coalesce(func.sum(UsageRow.revenue_micros), 0),
        )
        .where(
            UsageRow.tenant_id == tenant_id,
            UsageRow.ended_at >= since,
            UsageRow.ended_at < until,
        )
        .group_by(UsageRow.model, UsageRow.tier_served)
        .order_by(UsageRow.model, UsageRow.tier_served)
    )
    with ledger._read() as session:
        rows = session.execute(query).all()
    return [UsageLine(r[0], r[1], *(int(v) for v in r[2:])) for r in rows]
