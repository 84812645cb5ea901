"""What the dashboard shows, as one JSON-ready snapshot: books, series, floor, service.

The P&L is computed by the same code as `/v1/factory/pnl` (`report.pnl` with energy);
everything else is read from the same ledger snapshot, or from the dispatcher at the
moment of the request. Money goes out as decimal strings (exact); rates and latencies as
numbers.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, is_dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import numpy as np
from sqlalchemy.orm import Session

from tokenfactory.gateway.dashboard_batches import batch_queue
from tokenfactory.gateway.runtime import Floor, with_energy
from tokenfactory.ledger.records import Outcome
from tokenfactory.ledger.report import pnl
from tokenfactory.ledger.series import Timing, series, timings
from tokenfactory.sched import TierRule
from tokenfactory.sched.job import TIER_ORDER

TOP_TENANTS = 10
# Latency percentiles read at most this many of the window's newest requests.
TIMINGS_LIMIT = 20_000
SERVED = (Outcome.OK.value, Outcome.PREEMPTED_RESUMED.value)


@dataclass(frozen=True, slots=True)
class ReplicaState:
    """One replica at one moment."""

    name: str
    running: int
    max_concurrency: int
    healthy: bool
    engine_waiting: int | None  # what the engine reports waiting (vLLM's /metrics), if it does


@dataclass(frozen=True, slots=True)
class FloorState:
    """The dispatcher's queue and replicas at one moment (read on the event loop)."""

    queued_by_tier: dict[str, int]
    queued: int
    replicas: list[ReplicaState]
    preemptions: int  # since the gateway started


@dataclass(frozen=True, slots=True)
class TierService:
    """A tier's latency against its objectives over the window, and its attainment."""

    requests: int  # attempts that asked for the tier
    served: int  # of which served (a first token, then done or resumed to the end)
    met: int | None  # of which within every objective; None: no objective (best effort)
    attainment: float | None  # met / requests
    ttft_objective_s: float | None
    tpot_objective_s: float | None
    ttft_p50_s: float | None
    ttft_p99_s: float | None
    tpot_p50_s: float | None
    tpot_p99_s: float | None


def floor_state(floor: Floor) -> FloorState:
    """Queue depth per tier, and running requests and health per replica."""
    d = floor.dispatcher
    queued = d.queued_by_tier()
    replicas = [
        ReplicaState(
            r.name,
            len(r.running),
            r.max_concurrency,
            r.healthy,
            None if r.engine_load is None else r.engine_load.waiting,
        )
        for r in d.replicas
    ]
    by_tier = {tier: queued.get(tier, 0) for tier in floor.tiers}
    return FloorState(by_tier, sum(by_tier.values()), replicas, d.preemptions)


def snapshot(
    floor: Floor, since: datetime, until: datetime, buckets: int, state: FloorState
) -> dict[str, Any]:
    """The dashboard's data for [since, until), JSON-ready (blocking: run in a thread)."""
    rates = floor.cost_rates()
    # One read transaction, one snapshot: the P&L, the series and the latencies agree even
    # while requests are being billed (SQLite's WAL reads are snapshots; PostgreSQL needs
    # REPEATABLE READ for that).
    with Session(floor.ledger.engine) as session, session.begin():
        if floor.ledger.engine.dialect.name == "postgresql":
            session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
        # What Floor.pnl computes (the route /v1/factory/pnl), inside this snapshot.
        report = with_energy(pnl(session, since, until, rates), floor.costs)
        over_time = series(session, since, until, buckets, rates)
        recent = timings(session, since, until, TIMINGS_LIMIT)
        batches = batch_queue(session, since)
    tenants = sorted(
        report["per_tenant"].items(), key=lambda item: (-item[1]["revenue_usd"], item[0])
    )
    data = {
        "since": since,
        "until": until,
        "started_at": floor.started_at,
        "pnl": report,
        "series": over_time,
        "floor": state,
        "service": service_levels(recent, floor.tiers),
        "top_tenants": [{"tenant": name, **s} for name, s in tenants[:TOP_TENANTS]],
        "batches": batches,
    }
    out: dict[str, Any] = plain(data)
    return out


def service_levels(
    recent: Iterable[Timing], tiers: Mapping[str, TierRule]
) -> dict[str, TierService]:
    """Per tier asked for: TTFT and TPOT p50/p99 against the objectives, and attainment.

    Attainment is the share of attempts served within every objective of the tier, as the
    planner counts it: refused, abandoned and failed attempts are misses.
    """
    by_tier: dict[str, list[Timing]] = {}
    for t in recent:
        by_tier.setdefault(t.tier, []).append(t)
    out: dict[str, TierService] = {}
    for name in TIER_ORDER:
        if name not in tiers:
            continue
        rule, attempts = tiers[name], by_tier.get(name, [])
        served = [t for t in attempts if t.outcome in SERVED and t.ttft_s is not None]
        ttft = [t.ttft_s for t in served if t.ttft_s is not None]
        tpot = [t.tpot_s for t in served if t.tpot_s is not None]
        has_objective = rule.ttft_s is not None or rule.tpot_s is not None
        met = sum(1 for t in served if _met(t, rule))
        out[name] = TierService(
            requests=len(attempts),
            served=len(served),
            met=met if has_objective else None,
            attainment=met / len(attempts) if has_objective and attempts else None,
            ttft_objective_s=rule.ttft_s,
            tpot_objective_s=rule.tpot_s,
            ttft_p50_s=_percentile(ttft, 50),
            ttft_p99_s=_percentile(ttft, 99),
            tpot_p50_s=_percentile(tpot, 50),
            tpot_p99_s=_percentile(tpot, 99),
        )
    return out


def _met(t: Timing, rule: TierRule) -> bool:
    assert t.ttft_s is not None  # only served attempts are asked
    if rule.ttft_s is not None and t.ttft_s > rule.ttft_s:
        return False
    return rule.tpot_s is None or t.tpot_s is None or t.tpot_s <= rule.tpot_s


def _percentile(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def plain(value: Any) -> Any:
    """JSON-ready: Decimal as a fixed-point string, datetime as ISO 8601, dataclasses as
    objects."""
    if is_dataclass(value) and not isinstance(value, type):
        return plain(asdict(value))
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value
