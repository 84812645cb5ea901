"""Budgets and usage events under concurrency: nothing lost, nothing counted twice."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path
from typing import TypeVar

import pytest
from sqlalchemy import func, select

from tokenfactory.errors import BadInput
from tokenfactory.ledger import KeyNotFound, Ledger, Outcome, UsageEvent
from tokenfactory.ledger.schema import UsageRow

T = TypeVar("T")
MakeEvent = Callable[..., UsageEvent]


def race(n: int, work: Callable[[int], T]) -> list[T]:
    """Run `work(i)` for i in range(n) on n threads released together."""
    start = threading.Barrier(n)

    def run(i: int) -> T:
        start.wait()
        return work(i)

    with ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(run, range(n)))


def rows(ledger: Ledger) -> int:
    with ledger.engine.connect() as conn:
        return int(conn.scalar(select(func.count()).select_from(UsageRow)) or 0)


def test_charge_never_passes_the_budget_under_concurrency(ledger: Ledger) -> None:
    key, _ = ledger.create_key("acme", budget_usd=Decimal("0.00001"))  # 10 micros
    results = race(20, lambda _: ledger.charge(key.id, 1))
    assert results.count(True) == 10
    record = ledger.get_key(key.id)
    assert record is not None and record.spent_micros == record.budget_micros == 10
    assert ledger.remaining_budget(key.id) == Decimal(0)
    assert not ledger.charge(key.id, 1)
    assert ledger.charge(key.id, 0)


def test_sqlite_writers_in_two_ledgers_share_the_budget_safely(tmp_path: Path) -> None:
    # Two Ledger objects stand for two processes: each has its own lock, so only
    # BEGIN IMMEDIATE and the busy timeout keep them apart.
    first, second = Ledger.sqlite(tmp_path / "shared.db"), Ledger.sqlite(tmp_path / "shared.db")
    first.migrate()
    second.migrate()
    key, _ = first.create_key("acme", budget_usd=Decimal("0.00001"))
    results = race(20, lambda i: (first if i % 2 else second).charge(key.id, 1))
    assert results.count(True) == 10
    assert second.remaining_budget(key.id) == 0
    first.close()
    second.close()


def test_charge_spend_and_unknown_keys(ledger: Ledger) -> None:
    key, _ = ledger.create_key("acme", budget_usd=Decimal("1"))
    unlimited, _ = ledger.create_key("acme")
    assert ledger.charge(key.id, 600_000)
    assert not ledger.charge(key.id, 400_001)
    ledger.spend(key.id, 500_000)  # settling may overshoot the budget
    assert ledger.remaining_budget(key.id) == Decimal("-0.1")
    ledger.spend(key.id, -200_000)  # releasing a reservation
    assert ledger.remaining_budget(key.id) == Decimal("0.1")
    assert ledger.charge(unlimited.id, 10**12)
    with pytest.raises(BadInput):
        ledger.charge(key.id, -1)
    for call in (ledger.charge, ledger.spend):
        with pytest.raises(KeyNotFound):
            call(999, 1)
    with pytest.raises(KeyNotFound):
        ledger.remaining_budget(999)


def test_record_is_idempotent_and_charges_once(ledger: Ledger, make_event: MakeEvent) -> None:
    key, _ = ledger.create_key("acme", budget_usd=Decimal("1"))
    event = make_event("req-1", key.id, revenue_micros=250_000, ttft_s=0.125, error=None)
    assert ledger.record(event, charge_key=True)
    assert not ledger.record(event, charge_key=True)
    assert not ledger.record(make_event("req-1", key.id, output_tokens=9), charge_key=True)
    assert rows(ledger) == 1
    assert ledger.event("req-1") == event  # the first write wins, read back unchanged
    assert ledger.event("nope") is None
    assert ledger.remaining_budget(key.id) == Decimal("0.75")


def test_record_settles_a_reservation_once(ledger: Ledger, make_event: MakeEvent) -> None:
    key, _ = ledger.create_key("acme", budget_usd=Decimal("1"))
    assert ledger.charge(key.id, 300_000)  # reserve the worst case before dispatch
    event = make_event("req-1", key.id, revenue_micros=120_000)
    for _ in range(3):  # the gateway retries the write
        ledger.record(event, charge_key=True, reserved_micros=300_000)
    assert ledger.remaining_budget(key.id) == Decimal("0.88")


def test_record_without_charging_and_unknown_key(ledger: Ledger, make_event: MakeEvent) -> None:
    key, _ = ledger.create_key("acme", budget_usd=Decimal("1"))
    assert ledger.record(make_event("req-1", key.id))
    assert ledger.remaining_budget(key.id) == Decimal(1)
    with pytest.raises(KeyNotFound):
        ledger.record(make_event("req-2", 999))
    assert rows(ledger) == 1


def test_duplicates_racing_leave_one_row_and_one_charge(
    ledger: Ledger, make_event: MakeEvent
) -> None:
    key, _ = ledger.create_key("acme")
    event = make_event("req-race", key.id, revenue_micros=7)
    results = race(12, lambda _: ledger.record(event, charge_key=True))
    assert results.count(True) == 1
    assert rows(ledger) == 1
    record = ledger.get_key(key.id)
    assert record is not None and record.spent_micros == 7


def test_distinct_events_racing_are_all_kept(ledger: Ledger, make_event: MakeEvent) -> None:
    key, _ = ledger.create_key("acme")
    assert all(race(16, lambda i: ledger.record(make_event(f"r{i}", key.id), charge_key=True)))
    assert rows(ledger) == 16
    record = ledger.get_key(key.id)
    assert record is not None and record.spent_micros == 16 * 1_000


def test_events_listing(ledger: Ledger, make_event: MakeEvent) -> None:
    key, _ = ledger.create_key("acme")
    other, _ = ledger.create_key("beta")
    first = make_event("a", key.id, outcome=Outcome.ENGINE_ERROR, error="boom", replica=None)
    ledger.record(first)
    ledger.record(make_event("b", other.id))
    assert [e.request_id for e in ledger.events()] == ["a", "b"]
    assert ledger.events(key_id=key.id) == [first]
    assert ledger.events(limit=1) == [first]


def test_bad_events_are_refused(make_event: MakeEvent) -> None:
    with pytest.raises(BadInput):
        make_event("x", 1, cached_tokens=500)
    with pytest.raises(BadInput):
        make_event("x", 1, revenue_micros=-1)
    with pytest.raises(BadInput):
        make_event("", 1)
    with pytest.raises(BadInput):
        make_event("x", 1, started_at=make_event("y", 1).started_at.replace(tzinfo=None))
    with pytest.raises(ValueError):
        make_event("x", 1, outcome="mystery")
