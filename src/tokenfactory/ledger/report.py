"""Profit and loss from the ledger, aggregated in SQL.

Idle cost: the ledger keeps no replica-time rows. The caller (the gateway, which knows
each replica's cost rate and since when it has been up) passes `replica_cost_per_s`, and a
replica's idle cost over the window is `window seconds x rate - cost attributed to its
events`, floored at zero. So the window should lie within the time the replicas were up:
the gateway clamps `since` to its own start. Events belong to the window in which they
ended (were billed); one that straddles the edge counts whole on the side it ended.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, TypedDict

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from tokenfactory.errors import BadInput
from tokenfactory.ledger.records import Outcome, micros_to_usd, require_utc, round_usd
from tokenfactory.ledger.schema import Tenant, UsageRow, utcnow

_MICRO = Decimal("0.000001")


class Tokens(TypedDict):
    """Token counts: all input, the cached part of it, and output."""

    input: int
    cached: int
    output: int


class Slice(TypedDict):
    """Totals for one tier, tenant or replica."""

    tokens: Tokens
    requests: int
    revenue_usd: Decimal
    cost_usd: Decimal  # attributed
    profit_usd: Decimal  # revenue - attributed cost (replicas: - idle cost too)


class ReplicaSlice(Slice):
    """A replica's totals with its busy time and idle cost."""

    busy_s: float
    cost_per_s: Decimal | None  # None: no rate given, so no idle cost
    idle_cost_usd: Decimal


class Requests(TypedDict):
    """Request attempts, in all and per outcome (every outcome listed)."""

    total: int
    by_outcome: dict[str, int]


class Window(TypedDict):
    """The window reported on: [since, until)."""

    since: datetime
    until: datetime
    seconds: Decimal


class Pnl(TypedDict):
    """The factory's profit and loss over a window; money in Decimal dollars."""

    window: Window
    tokens: Tokens
    requests: Requests
    revenue_usd: Decimal
    cost_usd: Decimal
    idle_cost_usd: Decimal
    profit_usd: Decimal
    margin: Decimal | None  # profit / revenue; None without revenue
    cost_per_million_tokens: Decimal | None  # (cost + idle) per 1M output tokens
    per_tier: dict[str, Slice]
    per_tenant: dict[str, Slice]
    per_replica: dict[str, ReplicaSlice]


_SUMS = (
    func.count(UsageRow.id),
    func.coalesce(func.sum(UsageRow.input_tokens), 0),
    func.coalesce(func.sum(UsageRow.cached_tokens), 0),
    func.coalesce(func.sum(UsageRow.output_tokens), 0),
    func.coalesce(func.sum(UsageRow.revenue_micros), 0),
    func.coalesce(func.sum(UsageRow.cost_micros), 0),
    func.coalesce(func.sum(UsageRow.work_s), 0.0),
)


def pnl(
    session: Session,
    since: datetime | None,
    until: datetime | None,
    replica_cost_per_s: Mapping[str, Decimal],
) -> Pnl:
    """P&L of events that ended in [since, until); `since` defaults to the first event's
    start and `until` to now."""
    require_utc("since", since)
    require_utc("until", until)
    for replica, rate in replica_cost_per_s.items():
        if not isinstance(rate, Decimal | int) or rate < 0:
            raise BadInput(f"cost rate of {replica!r} must be a non-negative Decimal $/s")
    until = utcnow() if until is None else until
    if since is None:
        first = select(func.min(UsageRow.started_at)).where(UsageRow.ended_at < until)
        since = session.scalar(first) or until
    microseconds = max((until - since) // timedelta(microseconds=1), 0)
    seconds = Decimal(microseconds).scaleb(-6)
    where = (UsageRow.ended_at >= since, UsageRow.ended_at < until)

    total = _slice(session.execute(select(*_SUMS).where(*where)).one())
    outcomes = dict.fromkeys((o.value for o in Outcome), 0)
    for outcome, count in session.execute(
        select(UsageRow.outcome, func.count(UsageRow.id)).where(*where).group_by(UsageRow.outcome)
    ):
        outcomes[outcome] = int(count)
    per_tier = _grouped(session, UsageRow.tier_served, where)
    per_tenant = _grouped(session, Tenant.name, where)
    per_replica = _replicas(session, where, seconds, replica_cost_per_s)

    idle = sum((r["idle_cost_usd"] for r in per_replica.values()), Decimal(0))
    idle = idle.quantize(_MICRO)
    profit = total["revenue_usd"] - total["cost_usd"] - idle
    output = total["tokens"]["output"]
    revenue = total["revenue_usd"]
    return Pnl(
        window=Window(since=since, until=until, seconds=seconds),
        tokens=total["tokens"],
        requests=Requests(total=total["requests"], by_outcome=outcomes),
        revenue_usd=revenue,
        cost_usd=total["cost_usd"],
        idle_cost_usd=idle,
        profit_usd=profit,
        margin=round_usd(profit / revenue) if revenue else None,
        cost_per_million_tokens=(
            round_usd((total["cost_usd"] + idle) * 1_000_000 / output) if output else None
        ),
        per_tier=per_tier,
        per_tenant=per_tenant,
        per_replica=per_replica,
    )


def _slice(row: Sequence[Any]) -> Slice:
    count, inp, cached, out, revenue, cost = (int(v) for v in row[:6])
    return Slice(
        tokens=Tokens(input=inp, cached=cached, output=out),
        requests=count,
        revenue_usd=micros_to_usd(revenue),
        cost_usd=micros_to_usd(cost),
        profit_usd=micros_to_usd(revenue - cost),
    )


def _grouped(
    session: Session, key: Any, where: tuple[ColumnElement[bool], ...]
) -> dict[str, Slice]:
    query = select(key, *_SUMS).select_from(UsageRow).where(*where).group_by(key)
    if key is Tenant.name:
        query = query.join(Tenant, Tenant.id == UsageRow.tenant_id)
    return {str(row[0]): _slice(row[1:]) for row in session.execute(query)}


def _replicas(
    session: Session,
    where: tuple[ColumnElement[bool], ...],
    seconds: Decimal,
    rates: Mapping[str, Decimal],
) -> dict[str, ReplicaSlice]:
    query = (
        select(UsageRow.replica, *_SUMS)
        .where(UsageRow.replica.is_not(None), *where)
        .group_by(UsageRow.replica)
    )
    rows = {str(row[0]): row[1:] for row in session.execute(query)}
    zeros = (0, 0, 0, 0, 0, 0, 0.0)
    out: dict[str, ReplicaSlice] = {}
    for name in sorted(rows.keys() | rates.keys()):
        row = rows.get(name, zeros)
        base = _slice(row)
        rate = rates.get(name)
        idle = Decimal(0) if rate is None else round_usd(seconds * rate) - base["cost_usd"]
        idle = max(idle, Decimal(0)).quantize(_MICRO)
        out[name] = ReplicaSlice(
            **base,
            busy_s=float(row[6]),
            cost_per_s=rate,
            idle_cost_usd=idle,
        )
        out[name]["profit_usd"] = base["profit_usd"] - idle
    return out
