"""The ledger in buckets: each event in the bucket it ended in, sums equal to the P&L."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy.orm import Session

from tokenfactory.errors import BadInput
from tokenfactory.ledger import Ledger, Outcome, UsageEvent
from tokenfactory.ledger.series import series, timings

MakeEvent = Callable[..., UsageEvent]
T0 = datetime(2026, 1, 1, tzinfo=UTC)
UNTIL = T0 + timedelta(seconds=100)
RATES = {"r1": Decimal("0.001"), "r2": Decimal("0.0005")}


def ended(seconds: float, ran_s: float = 1.0) -> dict[str, object]:
    """Times of an event that ran `ran_s` seconds and ended `seconds` after T0."""
    end = T0 + timedelta(seconds=seconds)
    return {"started_at": end - timedelta(seconds=ran_s), "ended_at": end}


@pytest.fixture
def books(ledger: Ledger, make_event: MakeEvent) -> Ledger:
    acme, _ = ledger.create_key("acme")
    events = [
        # On the edge between buckets 0 and 1: it belongs to bucket 1.
        make_event("edge", acme.id, revenue_micros=7_000, cost_micros=300, **ended(10)),
        make_event("just-before", acme.id, output_tokens=20, **ended(9.999999)),
        make_event(
            "realtime", acme.id, tier_requested="realtime", tier_served="realtime",
            input_tokens=30, cached_tokens=10, output_tokens=70, revenue_micros=5_000,
            cost_micros=25_000, **ended(55),
        ),
        make_event(
            "flex", acme.id, replica="r2", tier_requested="flex", tier_served="flex",
            output_tokens=5, revenue_micros=2_000, cost_micros=1_000, **ended(57),
        ),
        make_event(
            "refused", acme.id, replica=None, output_tokens=0, revenue_micros=0,
            cost_micros=0, outcome=Outcome.REFUSED, **ended(58),
        ),
        make_event("last", acme.id, **ended(99.999999)),
        make_event("at-until", acme.id, revenue_micros=999_000, **ended(100)),
        make_event("before", acme.id, revenue_micros=999_000, **ended(-1)),
    ]  # fmt: skip
    for event in events:
        assert ledger.record(event)
    return ledger


def test_each_event_lands_in_the_bucket_it_ended_in(books: Ledger) -> None:
    with Session(books.engine) as session:
        s = series(session, T0, UNTIL, 10, RATES)
    b = s["buckets"]
    assert s["step_s"] == Decimal(10)
    assert [x["start"] for x in b] == [T0 + timedelta(seconds=10 * i) for i in range(10)]
    assert [x["requests"] for x in b] == [1, 1, 0, 0, 0, 3, 0, 0, 0, 1]
    assert b[0]["tokens"] == {"standard": {"input": 100, "cached": 0, "output": 20}}
    assert b[1]["revenue_usd"] == Decimal("0.007000") and b[1]["cost_usd"] == Decimal("0.0003")
    assert b[5]["tokens"] == {
        "realtime": {"input": 30, "cached": 10, "output": 70},
        "flex": {"input": 100, "cached": 0, "output": 5},
        "standard": {"input": 100, "cached": 0, "output": 0},
    }
    assert b[5]["revenue_usd"] == Decimal("0.007") and b[5]["cost_usd"] == Decimal("0.026")


def test_bucket_idle_cost_is_each_replicas_unused_rate_floored_at_zero(books: Ledger) -> None:
    with Session(books.engine) as session:
        b = series(session, T0, UNTIL, 10, RATES)["buckets"]
    # A quiet bucket: 10 s of r1 at $0.001/s and r2 at $0.0005/s.
    assert b[3]["idle_cost_usd"] == Decimal("0.015")
    assert b[3]["profit_usd"] == Decimal("-0.015")
    # Bucket 5: r1 was attributed $0.025 (more than its $0.01), r2 $0.001 of its $0.005.
    assert b[5]["idle_cost_usd"] == Decimal("0.004")
    assert b[5]["profit_usd"] == Decimal("0.007") - Decimal("0.026") - Decimal("0.004")
    # Bucket 1: r1 used $0.0003 of $0.01.
    assert b[1]["idle_cost_usd"] == Decimal("0.0097") + Decimal("0.005")


def test_buckets_add_up_to_the_windows_pnl_exactly(books: Ledger) -> None:
    for n in (1, 7, 10, 60):
        with Session(books.engine) as session:
            s = series(session, T0, UNTIL, n, RATES)
        pnl = books.pnl(T0, UNTIL, RATES)
        b = s["buckets"]
        assert len(b) == n
        assert sum((x["seconds"] for x in b), Decimal(0)) == pnl["window"]["seconds"]
        assert sum(x["requests"] for x in b) == pnl["requests"]["total"] == 6
        assert sum((x["revenue_usd"] for x in b), Decimal(0)) == pnl["revenue_usd"]
        assert sum((x["cost_usd"] for x in b), Decimal(0)) == pnl["cost_usd"]
        for tier, totals in pnl["per_tier"].items():
            for kind in ("input", "cached", "output"):
                summed = sum(x["tokens"].get(tier, {}).get(kind, 0) for x in b)
                assert summed == totals["tokens"][kind], (n, tier, kind)


def test_timings_are_the_newest_attempts_with_their_tpot(
    ledger: Ledger, make_event: MakeEvent
) -> None:
    key, _ = ledger.create_key("acme")
    ledger.record(make_event("a", key.id, ttft_s=0.5, output_tokens=11, **ended(20, ran_s=2.5)))
    ledger.record(make_event("b", key.id, ttft_s=None, output_tokens=0, **ended(30)))
    ledger.record(make_event("c", key.id, ttft_s=0.1, output_tokens=1, **ended(40)))
    with Session(ledger.engine) as session:
        newest = timings(session, T0, UNTIL, limit=2)
        every = timings(session, T0, UNTIL, limit=10)
    assert [t.output_tokens for t in newest] == [1, 0]
    a = every[-1]
    # 2.5 s in all, 0.5 s to the first token, then 10 more tokens in 2 s.
    assert a.ttft_s == 0.5 and a.tpot_s == pytest.approx(0.2)
    assert every[0].tpot_s is None and every[1].tpot_s is None


def test_bad_windows_are_refused(ledger: Ledger) -> None:
    with Session(ledger.engine) as session:
        with pytest.raises(BadInput, match="buckets"):
            series(session, T0, UNTIL, 0, RATES)
        with pytest.raises(BadInput, match="after since"):
            series(session, UNTIL, T0, 10, RATES)
        with pytest.raises(BadInput, match="timezone-aware"):
            series(session, T0.replace(tzinfo=None), UNTIL, 10, RATES)
