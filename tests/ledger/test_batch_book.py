"""The batch book on SQLite and PostgreSQL: a line and its event are written once,
together; reservations never leak; closing writes the files; tenants stay apart."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from tokenfactory.ledger import Ledger, UsageEvent
from tokenfactory.ledger.batch_records import BatchRecord, LineOutcome
from tokenfactory.ledger.batches import BatchBook

MakeEvent = Callable[..., UsageEvent]


def new_batch(ledger: Ledger, tenant: str = "acme", **key: object) -> tuple[BatchBook, BatchRecord]:
    book = BatchBook(ledger)
    record, _ = ledger.create_key(tenant, **key)  # type: ignore[arg-type]
    f = book.add_file(record.tenant_id, "in.jsonl", "batch", b"{}\n{}\n{}\n")
    expires = datetime.now(UTC) + timedelta(hours=24)
    b = book.create(record.id, "/v1/chat/completions", f.id, "24h", {"k": "v"}, expires)
    lines = [(n, f"c{n}", '{"model": "m"}') for n in (1, 2, 3)]
    assert book.start(b.id, "m", lines)
    return book, b


def test_a_line_and_its_event_are_written_once_together(
    ledger: Ledger, make_event: MakeEvent
) -> None:
    book, b = new_batch(ledger)
    assert b.status == "validating" and b.metadata == {"k": "v"}
    event = make_event(f"{b.id}-1", b.key_id, tier_served="batch", revenue_micros=700)
    done = LineOutcome(1, "completed", '{"custom_id": "c1"}', 100, 0, 50)
    assert book.finish(b.id, done, event)
    # A second writer of the same line (a resumed gateway) changes nothing.
    again = make_event(f"{b.id}-1", b.key_id, revenue_micros=999)
    assert not book.finish(b.id, done, again)
    assert [e.revenue_micros for e in ledger.events()] == [700]
    key = ledger.get_key(b.key_id)
    assert key is not None and key.spent_micros == 700
    assert [line.line for line in book.pending(b.id)] == [2, 3]
    counts = book.batch(b.id)
    assert counts is not None and counts.status == "in_progress"
    assert (counts.counts.total, counts.counts.completed, counts.counts.output_tokens) == (3, 1, 50)


def test_reservations_are_held_on_the_line_and_never_leak(
    ledger: Ledger, make_event: MakeEvent
) -> None:
    book, b = new_batch(ledger, budget_usd=Decimal("0.001"))  # 1000 micro-dollars
    assert book.reserve(b.id, 1, b.key_id, 600)
    assert not book.reserve(b.id, 2, b.key_id, 600)  # over the budget
    assert [line.reserved_micros for line in book.pending(b.id)] == [600, 0, 0]
    # The gateway stopped while line 1 ran: a restart gives its reservation back.
    book.release(b.id, b.key_id)
    assert ledger.remaining_budget(b.key_id) == Decimal("0.001")
    assert book.reserve(b.id, 1, b.key_id, 600)
    event = make_event(f"{b.id}-1", b.key_id, revenue_micros=250)
    assert book.finish(b.id, LineOutcome(1, "completed", "{}"), event)
    assert ledger.remaining_budget(b.key_id) == Decimal("0.00075")  # settled at 250
    assert book.reserve(b.id, 2, b.key_id, 500)
    assert book.finish(b.id, LineOutcome(2, "failed", '{"error": 1}'), None)  # refunded
    assert book.reserve(b.id, 3, b.key_id, 500)
    assert book.move(b.id, "cancelling", ("in_progress",))
    book.close(b.id, "cancelled", {3: '{"cancelled": 3}'})
    assert ledger.remaining_budget(b.key_id) == Decimal("0.00075")


def test_closing_writes_output_and_error_files_in_line_order(
    ledger: Ledger, make_event: MakeEvent
) -> None:
    book, b = new_batch(ledger)
    assert book.finish(b.id, LineOutcome(2, "completed", '{"n": 2}'), make_event("r2", b.key_id))
    assert book.finish(b.id, LineOutcome(3, "failed", '{"n": 3}'), None)
    assert book.move(b.id, "cancelling", ("validating", "in_progress"))
    assert not book.move(b.id, "cancelling", ("validating", "in_progress"))
    assert book.open_batches() == [b.id]
    book.close(b.id, "cancelled", {1: '{"n": 1}'})
    closed = book.batch(b.id)
    assert closed is not None and closed.status == "cancelled"
    assert closed.stamps["cancelling"] and closed.stamps["cancelled"]
    assert (closed.counts.completed, closed.counts.failed, closed.counts.total) == (1, 1, 3)
    assert closed.output_file_id and closed.error_file_id
    assert book.content(b.tenant_id, closed.output_file_id) == b'{"n": 2}\n'
    assert book.content(b.tenant_id, closed.error_file_id) == b'{"n": 1}\n{"n": 3}\n'
    assert book.open_batches() == []


def test_a_tenant_sees_only_its_own(ledger: Ledger) -> None:
    book, b = new_batch(ledger, "acme")
    other, _ = ledger.create_key("other")
    assert book.batch(b.id, b.tenant_id) is not None
    assert book.batch(b.id, other.tenant_id) is None
    assert book.file(other.tenant_id, b.input_file_id) is None
    assert book.content(other.tenant_id, b.input_file_id) is None
    assert book.batches(other.tenant_id, None, 10) == []
    assert [x.id for x in book.batches(b.tenant_id, None, 10)] == [b.id]
    f = book.add_file(b.tenant_id, "more.jsonl", "batch", b"{}")
    later = book.create(b.key_id, b.endpoint, f.id, "24h", None, b.expires_at)
    assert [x.id for x in book.batches(b.tenant_id, None, 1)] == [later.id]  # newest first
    assert [x.id for x in book.batches(b.tenant_id, later.id, 10)] == [b.id]
