"""The ledger over time, for the dashboard: P&L in equal buckets, and request timings.

Buckets split [since, until) into `n` equal parts (the last takes the remainder of a
microsecond); an event belongs to the bucket in which it ended, as in `report.pnl`, so
the buckets' tokens, revenue and attributed cost add up exactly to the window's. The
bucket of an event is chosen in SQL by comparing `ended_at` with each edge: exact on
SQLite and PostgreSQL alike, with no date arithmetic in either dialect.

Idle cost per bucket is each replica's `rate x bucket seconds - cost attributed to its
events in the bucket`, floored at zero per replica and bucket; the window's idle cost in
`report.pnl` floors once over the whole window, so the two can differ when a replica's
attributed cost is above its rate in one bucket and below it in another.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TypedDict

from sqlalchemy import ColumnElement, case, func, literal, select
from sqlalchemy.orm import Session

from tokenfactory.errors import BadInput
from tokenfactory.ledger.records import micros_to_usd, require_utc, round_usd
from tokenfactory.ledger.report import Tokens
from tokenfactory.ledger.schema import UsageRow

MAX_BUCKETS = 1000


class Bucket(TypedDict):
    """One slice of the window: tokens by tier served, requests and money."""

    start: datetime
    seconds: Decimal
    tokens: dict[str, Tokens]  # tier served -> tokens of events that ended in the bucket
    requests: int
    revenue_usd: Decimal
    cost_usd: Decimal  # attributed
    idle_cost_usd: Decimal
    profit_usd: Decimal  # revenue - attributed - idle


class Series(TypedDict):
    """The window [since, until) in equal buckets, oldest first."""

    since: datetime
    until: datetime
    step_s: Decimal
    buckets: list[Bucket]


@dataclass(frozen=True, slots=True)
class Timing:
    """How one request attempt went, for latency percentiles and service levels."""

    tier: str  # the tier asked for: its objectives are the ones that apply
    outcome: str
    output_tokens: int
    ttft_s: float | None
    tpot_s: float | None  # None with fewer than two output tokens or no first token


def series(
    session: Session,
    since: datetime,
    until: datetime,
    buckets: int,
    replica_cost_per_s: Mapping[str, Decimal],
) -> Series:
    """The window's P&L in `buckets` equal buckets (events by when they ended)."""
    require_utc("since", since)
    require_utc("until", until)
    if not 1 <= buckets <= MAX_BUCKETS:
        raise BadInput(f"buckets must be 1 to {MAX_BUCKETS}, not {buckets}", param="buckets")
    if until <= since:
        raise BadInput("until must be after since", param="until")
    step = (until - since) / buckets
    starts = [since + step * i for i in range(buckets)]
    ends = [*starts[1:], until]
    # A CASE over the edges picks the bucket; PostgreSQL groups by the subquery's column
    # (grouping by the CASE itself would bind its parameters twice: two distinct keys).
    bucket: ColumnElement[int] = literal(0)
    if buckets > 1:
        edges = ((UsageRow.ended_at < end, i) for i, end in enumerate(ends[:-1]))
        bucket = case(*edges, else_=buckets - 1)
    rows = (
        select(
            bucket.label("bucket"),
            UsageRow.id,
            UsageRow.tier_served,
            UsageRow.replica,
            UsageRow.input_tokens,
            UsageRow.cached_tokens,
            UsageRow.output_tokens,
            UsageRow.revenue_micros,
            UsageRow.cost_micros,
        )
        .where(UsageRow.ended_at >= since, UsageRow.ended_at < until)
        .subquery()
    )
    out = [_empty(start, end) for start, end in zip(starts, ends, strict=True)]
    by_tier = select(
        rows.c.bucket,
        rows.c.tier_served,
        func.count(rows.c.id),
        func.sum(rows.c.input_tokens),
        func.sum(rows.c.cached_tokens),
        func.sum(rows.c.output_tokens),
        func.sum(rows.c.revenue_micros),
    ).group_by(rows.c.bucket, rows.c.tier_served)
    revenue = [0] * buckets
    for i, tier, count, inp, cached, output, earned in session.execute(by_tier):
        b = out[int(i)]
        b["tokens"][str(tier)] = Tokens(input=int(inp), cached=int(cached), output=int(output))
        b["requests"] += int(count)
        revenue[int(i)] += int(earned)

    by_replica = select(rows.c.bucket, rows.c.replica, func.sum(rows.c.cost_micros)).group_by(
        rows.c.bucket, rows.c.replica
    )
    spent_total = [0] * buckets
    spent_by_replica: list[dict[str, int]] = [{} for _ in range(buckets)]
    for i, replica, spent in session.execute(by_replica):
        spent_total[int(i)] += int(spent)
        if replica is not None:
            spent_by_replica[int(i)][str(replica)] = int(spent)

    for i, b in enumerate(out):
        b["revenue_usd"] = micros_to_usd(revenue[i])
        b["cost_usd"] = micros_to_usd(spent_total[i])
        b["idle_cost_usd"] = _idle(b["seconds"], spent_by_replica[i], replica_cost_per_s)
        b["profit_usd"] = b["revenue_usd"] - b["cost_usd"] - b["idle_cost_usd"]
    return Series(since=since, until=until, step_s=_seconds(step), buckets=out)


def timings(session: Session, since: datetime, until: datetime, limit: int) -> list[Timing]:
    """The newest `limit` request attempts that ended in [since, until)."""
    require_utc("since", since)
    require_utc("until", until)
    query = (
        select(
            UsageRow.tier_requested,
            UsageRow.outcome,
            UsageRow.output_tokens,
            UsageRow.ttft_s,
            UsageRow.started_at,
            UsageRow.ended_at,
        )
        .where(UsageRow.ended_at >= since, UsageRow.ended_at < until)
        .order_by(UsageRow.ended_at.desc(), UsageRow.id.desc())
        .limit(limit)
    )
    return [_timing(*row) for row in session.execute(query)]


def _timing(
    tier: str, outcome: str, output: int, ttft: float | None, started: datetime, ended: datetime
) -> Timing:
    tpot = None
    if ttft is not None and output >= 2:
        # The event spans queue and generation; the decode part is what follows TTFT.
        tpot = max(0.0, (ended - started).total_seconds() - ttft) / (output - 1)
    return Timing(tier, outcome, output, ttft, tpot)


def _empty(start: datetime, end: datetime) -> Bucket:
    zero = Decimal(0).quantize(Decimal("0.000001"))
    return Bucket(
        start=start,
        seconds=_seconds(end - start),
        tokens={},
        requests=0,
        revenue_usd=zero,
        cost_usd=zero,
        idle_cost_usd=zero,
        profit_usd=zero,
    )


def _idle(seconds: Decimal, spent: Mapping[str, int], rates: Mapping[str, Decimal]) -> Decimal:
    idle = Decimal(0)
    for name, rate in rates.items():
        unused = round_usd(seconds * rate) - micros_to_usd(spent.get(name, 0))
        idle += max(unused, Decimal(0))
    return round_usd(idle)


def _seconds(span: timedelta) -> Decimal:
    return Decimal(span // timedelta(microseconds=1)).scaleb(-6)
