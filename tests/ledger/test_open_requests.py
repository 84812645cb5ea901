"""The journal of running requests: opened with the reservation, advanced, closed with
the final event, and billed once as interrupted when a gateway died first."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import replace
from decimal import Decimal

import pytest
from sqlalchemy import create_engine, event, text

from tokenfactory.ledger import Ledger, Outcome, UsageEvent
from tokenfactory.ledger.gateways import Gateways
from tokenfactory.ledger.open_requests import (
    Advance,
    Close,
    Open,
    OpenRequests,
    Withdraw,
    dump_event,
    load_event,
)
from tokenfactory.ledger.records import KeyNotFound

MakeEvent = Callable[..., UsageEvent]


def interrupted(make_event: MakeEvent, rid: str, key_id: int, tokens: int) -> UsageEvent:
    return make_event(
        rid, key_id, outcome=Outcome.INTERRUPTED, output_tokens=tokens, revenue_micros=tokens
    )


def test_an_event_survives_its_journal_row_exactly(make_event: MakeEvent) -> None:
    event = make_event("r1", 7, ttft_s=0.25, error=None, outcome=Outcome.INTERRUPTED)
    assert load_event(dump_event(event)) == event


def test_open_reserves_and_refuses_past_the_budget(ledger: Ledger, make_event: MakeEvent) -> None:
    book = OpenRequests(ledger)
    key, _ = ledger.create_key("acme", budget_usd=Decimal("0.001"))
    assert book.open(interrupted(make_event, "r1", key.id, 0), 600)
    assert not book.open(interrupted(make_event, "r2", key.id, 0), 600)  # 1200 > 1000
    assert [r.event.request_id for r in book.running()] == ["r1"]
    assert book.running()[0].reserved_micros == 600
    assert ledger.get_key(key.id).spent_micros == 600  # type: ignore[union-attr]
    book.withdraw("r1", key.id)
    book.withdraw("r1", key.id)  # again: nothing more is given back
    assert book.running() == []
    assert ledger.get_key(key.id).spent_micros == 0  # type: ignore[union-attr]


def test_close_writes_the_final_event_settles_and_drops_the_row(
    ledger: Ledger, make_event: MakeEvent
) -> None:
    book = OpenRequests(ledger)
    key, _ = ledger.create_key("acme", budget_usd=Decimal("1"))
    assert book.open(interrupted(make_event, "r1", key.id, 0), 5_000)
    book.advance([interrupted(make_event, "r1", key.id, 16)])
    assert book.running()[0].event.output_tokens == 16
    assert book.running()[0].reserved_micros == 5_000  # advancing keeps the reservation
    final = make_event("r1", key.id, revenue_micros=1_234)
    assert book.close(final, 5_000, journalled=True)
    assert not book.close(final, 5_000, journalled=True)  # once only
    assert book.running() == []
    assert ledger.event("r1") == final
    assert ledger.get_key(key.id).spent_micros == 1_234  # type: ignore[union-attr]
    assert book.recover() == 0


def test_recover_bills_what_was_journalled_once_and_frees_reservations(
    ledger: Ledger, make_event: MakeEvent
) -> None:
    book = OpenRequests(ledger)
    budgeted, _ = ledger.create_key("acme", budget_usd=Decimal("1"))
    unlimited, _ = ledger.create_key("globex")
    assert book.open(interrupted(make_event, "r1", budgeted.id, 0), 9_000)
    book.advance(
        [
            interrupted(make_event, "r1", budgeted.id, 32),
            interrupted(make_event, "r2", unlimited.id, 16),  # opened by its first advance
        ]
    )
    assert book.open(interrupted(make_event, "r3", budgeted.id, 0), 4_000)  # sent nothing
    assert book.recover() == 3
    assert book.recover() == 0  # a second start finds nothing left
    assert book.running() == []
    r1, r2, r3 = (ledger.event(rid) for rid in ("r1", "r2", "r3"))
    assert r1 is not None and r2 is not None and r3 is not None
    assert (r1.output_tokens, r2.output_tokens, r3.output_tokens) == (32, 16, 0)
    assert {r1.outcome, r2.outcome, r3.outcome} == {Outcome.INTERRUPTED}
    assert ledger.get_key(budgeted.id).spent_micros == 32  # type: ignore[union-attr]
    assert ledger.get_key(unlimited.id).spent_micros == 16  # type: ignore[union-attr]
    assert len(ledger.events()) == 3
    assert ledger.pnl()["requests"]["by_outcome"]["interrupted"] == 3


def test_a_request_already_billed_is_not_billed_again_by_recovery(
    ledger: Ledger, make_event: MakeEvent
) -> None:
    book = OpenRequests(ledger)
    key, _ = ledger.create_key("acme")
    final = make_event("r1", key.id, revenue_micros=500)
    assert ledger.record(final, charge_key=True)
    # A late renewal re-opening the row of a finished request bills nothing more.
    book.advance([replace(interrupted(make_event, "r1", key.id, 16), revenue_micros=999)])
    assert book.recover() == 1
    assert ledger.event("r1") == final
    assert ledger.get_key(key.id).spent_micros == 500  # type: ignore[union-attr]


def test_recover_bills_only_rows_of_dead_gateways_and_never_a_live_ones(
    ledger: Ledger, make_event: MakeEvent
) -> None:
    gateways = Gateways(ledger)
    key, _ = ledger.create_key("acme", budget_usd=Decimal("1"))
    gateways.join("a", 60)
    gateways.join("b", 60)
    gateways.join("dead", -1)  # its lease ran out a second ago
    a, b, dead = (OpenRequests(ledger, name) for name in ("a", "b", "dead"))
    assert a.open(interrupted(make_event, "ra", key.id, 0), 1_000)
    b.advance([interrupted(make_event, "rb", key.id, 16)])
    dead.advance([interrupted(make_event, "rd1", key.id, 32)])
    assert dead.open(interrupted(make_event, "rd2", key.id, 0), 2_000)
    # Never joined at all (a gateway killed before it took a lease): dead as well.
    OpenRequests(ledger, "ghost").advance([interrupted(make_event, "rg", key.id, 8)])
    owners = {r.event.request_id: r.owner for r in a.running()}
    assert owners == {"ra": "a", "rb": "b", "rd1": "dead", "rd2": "dead", "rg": "ghost"}

    assert b.recover() == 3  # the dead gateway's two rows and the ghost's
    assert a.recover() == 0  # once only, and the live gateways' rows stay
    assert sorted(r.event.request_id for r in a.running()) == ["ra", "rb"]
    assert [g.name for g in gateways.all()] == ["a", "b"]  # the dead one's lease dropped
    billed = {e.request_id: (e.outcome, e.output_tokens) for e in ledger.events()}
    assert billed == {
        rid: (Outcome.INTERRUPTED, n) for rid, n in (("rd1", 32), ("rd2", 0), ("rg", 8))
    }
    assert ledger.get_key(key.id).spent_micros == 1_000 + 32 + 8  # type: ignore[union-attr]

    # A lease renewed holds; a gateway that stops gives its lease back: billed at once.
    assert gateways.renew("a", 60) and not gateways.renew("dead", 60)
    gateways.leave("a")
    assert not gateways.renew("a", 60)
    assert b.recover() == 1
    assert [r.event.request_id for r in b.running()] == ["rb"]
    assert ledger.event("ra") is not None and ledger.event("ra").output_tokens == 0  # type: ignore[union-attr]
    assert ledger.get_key(key.id).spent_micros == 32 + 8  # type: ignore[union-attr]


def test_a_round_runs_in_order_in_one_transaction(ledger: Ledger, make_event: MakeEvent) -> None:
    book = OpenRequests(ledger, "gw")
    key, _ = ledger.create_key("acme", budget_usd=Decimal("0.001"))
    assert book.open(interrupted(make_event, "r0", key.id, 0), 600)
    commits: list[object] = []
    event.listen(ledger.engine, "commit", commits.append)
    done = book.apply(
        [
            Open(interrupted(make_event, "r1", key.id, 0), 600),  # 1200 > 1000: refused
            Close(make_event("r0", key.id, revenue_micros=100), 600, journalled=True),
            Open(interrupted(make_event, "r2", key.id, 0), 600),  # 700: it sees the close
            Advance(interrupted(make_event, "r2", key.id, 16)),
            Advance(interrupted(make_event, "r3", key.id, 8)),
            Withdraw("r2", key.id),
        ]
    )
    assert done == [False, True, True, None, None, None]
    assert len(commits) == 1
    assert [(r.event.request_id, r.event.output_tokens) for r in book.running()] == [("r3", 8)]
    assert ledger.get_key(key.id).spent_micros == 100  # type: ignore[union-attr]


def test_a_failed_round_fails_only_its_bad_op(ledger: Ledger, make_event: MakeEvent) -> None:
    book = OpenRequests(ledger, "gw")
    key, _ = ledger.create_key("acme", budget_usd=Decimal("1"))
    commits: list[object] = []
    event.listen(ledger.engine, "commit", commits.append)
    done = book.apply(
        [
            Close(make_event("r1", key.id, revenue_micros=100), 0, journalled=False),
            Close(make_event("r2", key.id + 1, revenue_micros=100), 0, journalled=False),
            Open(interrupted(make_event, "r3", key.id, 0), 500),
        ]
    )
    assert done[0] is True and done[2] is True
    assert isinstance(done[1], KeyNotFound)
    assert len(commits) == 2  # the round was undone, then each good op written alone
    assert ledger.event("r1") is not None and ledger.event("r2") is None
    assert [r.event.request_id for r in book.running()] == ["r3"]
    assert ledger.get_key(key.id).spent_micros == 600  # type: ignore[union-attr]


@pytest.mark.parametrize("bare_ledger", ["postgresql"], indirect=True)
def test_rounds_take_key_locks_in_order_so_gateways_never_deadlock(
    ledger: Ledger, make_event: MakeEvent
) -> None:
    book = OpenRequests(ledger, "gw")
    first, _ = ledger.create_key("acme")
    second, _ = ledger.create_key("globex")
    commits: list[object] = []
    event.listen(ledger.engine, "commit", commits.append)
    done: list[object] = []
    # Another gateway on the same database, its round holding the first key.
    other = create_engine(ledger.engine.url)
    spend = text("UPDATE api_keys SET spent_micros = spent_micros + 1 WHERE id = :id")
    waiting = text(
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE wait_event_type = 'Lock' AND datname = current_database()"
    )
    with other.connect() as theirs, other.connect() as watch:
        theirs.execute(spend, {"id": first.id})
        ops = [
            Close(make_event("r2", second.id, revenue_micros=10), 0, journalled=False),
            Close(make_event("r1", first.id, revenue_micros=10), 0, journalled=False),
        ]
        writer = threading.Thread(target=lambda: done.extend(book.apply(ops)))
        writer.start()
        limit = time.monotonic() + 30
        while watch.execute(waiting).scalar_one() == 0:  # our round waits for the first key
            assert time.monotonic() < limit, "the round never waited for the key"
            time.sleep(0.005)
        # Had the round taken the second key first, this would close a cycle of waits.
        theirs.execute(spend, {"id": second.id})
        theirs.commit()
    writer.join()
    other.dispose()
    assert done == [True, True]
    assert len(commits) == 1  # the round went through whole, not undone and retried
    assert ledger.get_key(first.id).spent_micros == 11  # type: ignore[union-attr]
    assert ledger.get_key(second.id).spent_micros == 11  # type: ignore[union-attr]


def test_a_rounds_closes_are_billed_together_yet_answered_each_as_alone(
    ledger: Ledger, make_event: MakeEvent
) -> None:
    book = OpenRequests(ledger, "gw")
    key, _ = ledger.create_key("acme", budget_usd=Decimal("0.001"))
    other, _ = ledger.create_key("globex", budget_usd=Decimal("1"))
    assert book.open(interrupted(make_event, "r1", key.id, 0), 400)
    assert book.open(interrupted(make_event, "r2", key.id, 0), 400)
    assert ledger.record(make_event("old", key.id, revenue_micros=100), charge_key=True)
    statements: list[str] = []
    event.listen(ledger.engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    done = book.apply(
        [
            Advance(interrupted(make_event, "r1", key.id, 16)),  # written before r1's close
            Close(make_event("r1", key.id, revenue_micros=300), 400, journalled=True),
            Close(make_event("old", key.id, revenue_micros=900), 0, journalled=False),
            # Another key's budget: it need not wait for the closes held back.
            Open(interrupted(make_event, "r5", other.id, 0), 1_000),
            Close(make_event("r4", other.id, revenue_micros=50), 0, journalled=False),
            Close(make_event("r2", key.id, revenue_micros=200), 400, journalled=True),
            Close(make_event("r2", key.id, revenue_micros=999), 400, journalled=True),
            Advance(interrupted(make_event, "r2", key.id, 8)),  # a late renewal re-opens r2
            # 100 + 300 + 200 spent: 400 more fits only if the closes moved the spend first.
            Open(interrupted(make_event, "r6", key.id, 0), 400),
        ]
    )
    assert done == [None, True, False, True, True, True, False, None, True]
    rows = {r.event.request_id: (r.event.output_tokens, r.reserved_micros) for r in book.running()}
    assert rows == {"r2": (8, 0), "r5": (0, 1_000), "r6": (0, 400)}
    billed = {e.request_id: e.revenue_micros for e in ledger.events()}
    assert billed == {"old": 100, "r1": 300, "r4": 50, "r2": 200}
    assert ledger.get_key(key.id).spent_micros == 1_000  # type: ignore[union-attr]
    assert ledger.get_key(other.id).spent_micros == 1_050  # type: ignore[union-attr]
    # The closes share one DELETE and one INSERT, but for the second close of r2: it has
    # to see the first's event, so those before it are written first.
    inserts = [s for s in statements if s.startswith("INSERT INTO usage_events")]
    deletes = [s for s in statements if s.startswith("DELETE FROM open_requests")]
    assert (len(inserts), len(deletes)) == (2, 2)


def test_a_withdrawal_in_a_round_gives_back_only_what_its_row_held(
    ledger: Ledger, make_event: MakeEvent
) -> None:
    book = OpenRequests(ledger, "gw")
    key, _ = ledger.create_key("acme", budget_usd=Decimal("0.001"))
    assert book.open(interrupted(make_event, "r1", key.id, 0), 700)
    done = book.apply(
        [
            Withdraw("r1", key.id),
            Withdraw("r1", key.id),  # again: its row is gone, nothing more given back
            Close(make_event("r2", key.id, revenue_micros=100), 0, journalled=True),
            Withdraw("r3", key.id),  # never opened
            Open(interrupted(make_event, "r4", key.id, 0), 900),  # sees the 700 given back
        ]
    )
    assert done == [None, None, True, None, True]
    assert [r.event.request_id for r in book.running()] == ["r4"]
    assert ledger.get_key(key.id).spent_micros == 1_000  # type: ignore[union-attr]


def test_a_round_of_closes_with_a_missing_key_fails_only_that_close(
    ledger: Ledger, make_event: MakeEvent
) -> None:
    book = OpenRequests(ledger, "gw")
    key, _ = ledger.create_key("acme")
    assert ledger.record(make_event("old", key.id), charge_key=True)
    done = book.apply(
        [
            Close(make_event("r1", key.id, revenue_micros=100), 0, journalled=True),
            Close(make_event("old", key.id + 1), 0, journalled=False),  # billed, no such key
            Close(make_event("r2", key.id + 1), 0, journalled=True),
            Close(make_event("r3", key.id, revenue_micros=10), 0, journalled=False),
        ]
    )
    assert done[0] is True and done[3] is True
    assert isinstance(done[1], KeyNotFound) and isinstance(done[2], KeyNotFound)
    assert sorted(e.request_id for e in ledger.events()) == ["old", "r1", "r3"]
    assert ledger.get_key(key.id).spent_micros == 1_000 + 100 + 10  # type: ignore[union-attr]
