"""The journal of running requests: what each would be billed if the gateway died now.

A request with a budget reservation opens its row in the transaction that reserves; a
stream's row is advanced (one transaction for every stream that asks at once) before the
client is sent tokens the row does not yet cover. The final usage event is written in the
transaction that deletes the row. Each row names the gateway running it; once that
gateway is dead (its lease in `gateways` is past, see ledger/gateways.py), any other bills
the row as an `interrupted` event and settles its reservation: the row's request id makes
that happen at most once, whichever of the two writes it first.

The gateway's writes here are ops (`Open`, `Advance`, `Close`, `Withdraw`) that `apply`
runs many at a time, in order, in one transaction (gateway/journal.py queues them).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, or_, select

from tokenfactory.ledger.books import Ledger
from tokenfactory.ledger.gateways import forget_dead, live_names
from tokenfactory.ledger.records import Outcome, UsageEvent
from tokenfactory.ledger.schema import OpenRequestRow, utcnow

_FIELDS = tuple(UsageEvent.__dataclass_fields__)
_TIMES = ("started_at", "ended_at")


@dataclass(frozen=True, slots=True)
class OpenRequest:
    """A journal row: the event it stands for and the reservation it holds."""

    event: UsageEvent
    reserved_micros: int
    opened_at: datetime
    updated_at: datetime
    owner: str | None


@dataclass(frozen=True, slots=True)
class Open:
    """Reserve budget and open the request's row; done: whether the budget covered it."""

    event: UsageEvent
    reserve_micros: int


@dataclass(frozen=True, slots=True)
class Advance:
    """Make this the row's event, opening the row if it is not there yet."""

    event: UsageEvent


@dataclass(frozen=True, slots=True)
class Close:
    """Write the final event, settle the reservation, drop the row; done: whether it was
    new (False: the request id was already billed)."""

    event: UsageEvent
    reserve_micros: int
    journalled: bool  # whether it may have a row to drop


@dataclass(frozen=True, slots=True)
class Withdraw:
    """A request refused before it ran: drop its row, give back what it reserved."""

    request_id: str
    key_id: int


Op = Open | Advance | Close | Withdraw
# What an op came to: its answer (Open and Close), None, or the error that failed it.
Done = bool | None | Exception


class OpenRequests:
    """The open requests of one ledger, as the gateway `owner` opens and bills them."""

    def __init__(self, ledger: Ledger, owner: str | None = None) -> None:
        self.ledger = ledger
        self.owner = owner

    def apply(self, ops: Sequence[Op]) -> list[Done]:
        """Run the ops in order in one transaction; what each came to, in order.

        Each sees the ones before it (a budget check counts what an earlier op reserved or
        settled). Should the transaction fail, each op runs again alone in its own, so that
        one bad op fails only itself.
        """
        try:
            with self.ledger._transaction() as connection:
                return self._run(connection, ops)
        except Exception as e:
            if len(ops) == 1:
                return [e]
        return [self._alone(op) for op in ops]

    def _alone(self, op: Op) -> Done:
        """One op in its own transaction; its answer, or the error that failed it."""
        try:
            with self.ledger._transaction() as connection:
                return self._run(connection, [op])[0]
        except Exception as e:
            return e

    def _run(self, connection: Connection, ops: Sequence[Op]) -> list[Done]:
        self._lock_keys(connection, ops)
        round_ = _Round(self, connection)
        for op in ops:
            round_.run(op)
        return round_.flush()

    def _lock_keys(self, connection: Connection, ops: Sequence[Op]) -> None:
        """On PostgreSQL, lock the keys whose spend the ops move, in the order of their ids,
        before moving any: two gateways' rounds on one database could otherwise each hold
        one key the other waits for (a deadlock, broken only after a second). SQLite locks
        the whole database for a write transaction anyway."""
        if self.ledger._sqlite:
            return
        keys = {
            op.key_id if isinstance(op, Withdraw) else op.event.key_id
            for op in ops
            if not isinstance(op, Advance)  # a renewal moves no spend
        }
        if len(keys) > 1:
            connection.execute(self.ledger._sql.lock_keys, {"key_ids": sorted(keys)})

    def _row(self, event: UsageEvent, reserve_micros: int, now: datetime) -> dict[str, Any]:
        return {
            "request_id": event.request_id,
            "key_id": event.key_id,
            "reserved_micros": reserve_micros,
            "event": dump_event(event),
            "opened_at": now,
            "updated_at": now,
            "owner": self.owner,
        }

    def open(self, event: UsageEvent, reserve_micros: int) -> bool:
        """Reserve budget and open the request's row at once; False (nothing written) when
        the key's budget cannot cover the reservation."""
        return self._done(Open(event, reserve_micros)) is True

    def advance(self, events: Sequence[UsageEvent]) -> None:
        """Make these the rows' events, opening rows not there yet, in one transaction."""
        if not events:
            return
        with self.ledger._transaction() as connection:
            self._run(connection, [Advance(e) for e in events])

    def close(self, event: UsageEvent, reserve_micros: int, *, journalled: bool) -> bool:
        """Write the final event, settle the reservation and drop the row, at once; False
        when the request id was already billed (nothing changes then)."""
        return self._done(Close(event, reserve_micros, journalled)) is True

    def withdraw(self, request_id: str, key_id: int) -> None:
        """A request refused before it ran: drop its row and give back what it reserved."""
        self._done(Withdraw(request_id, key_id))

    def _done(self, op: Op) -> Done:
        """One op in its own transaction; its answer, or its error raised."""
        done = self._alone(op)
        if isinstance(done, Exception):
            raise done
        return done

    def running(self) -> list[OpenRequest]:
        """Every open row, oldest first."""
        query = select(OpenRequestRow).order_by(OpenRequestRow.opened_at)
        with self.ledger._read() as session:
            return [
                OpenRequest(
                    load_event(r.event), r.reserved_micros, r.opened_at, r.updated_at, r.owner
                )
                for r in session.scalars(query)
            ]

    def recover(self) -> int:
        """Bill as `interrupted` every row whose gateway is dead (its lease past, or no
        lease at all), settling its reservation; drop dead gateways' leases; how many.

        Never a row of this book's own owner, nor of a gateway whose lease holds. Rows
        another gateway is billing at the same moment are skipped (PostgreSQL), not waited on.
        """
        with self.ledger._write() as session:
            now = self.ledger._now(session)
            orphaned = or_(
                OpenRequestRow.owner.is_(None), OpenRequestRow.owner.not_in(live_names(now))
            )
            if self.owner is not None:
                orphaned &= OpenRequestRow.owner.is_distinct_from(self.owner)
            query = select(OpenRequestRow).where(orphaned)
            rows = list(session.scalars(query.with_for_update(skip_locked=True)))
            for row in rows:
                event = load_event(row.event)
                self.ledger._record(session.connection(), event, True, row.reserved_micros)
                session.delete(row)
            forget_dead(session, now)
        return len(rows)


class _Round:
    """Ops run in one transaction, three kinds of write held back to be done together: the
    renewals in a row (one statement for all their rows), the ends of requests (closes and
    withdrawals: one statement drops all their rows, one bills all the closes) and the
    moves of keys' spends (one statement per key). Each is done before the first op that
    could see it: renewals before the ends (a close drops the row a renewal writes) and
    before an open; ends before any op on a request id they end and before an open on a
    key whose spend they move; spends before a budget check; all before the transaction
    ends."""

    def __init__(self, book: OpenRequests, connection: Connection) -> None:
        self.book, self.ledger, self.connection = book, book.ledger, connection
        self.now = utcnow()
        self.done: list[Done] = []  # each op's answer, filled in once its writes are done
        self.renewals: list[dict[str, Any]] = []
        self.ends: list[tuple[int, Close | Withdraw]] = []  # with the op's place in `done`
        self.ending: set[str] = set()  # the request ids of `ends`
        self.ending_keys: set[int] = set()  # the keys whose spends `ends` move
        self.spends: dict[int, int] = {}  # key id -> micros its spend moves by

    def run(self, op: Op) -> None:
        """Do `op`, or hold its writes back; its answer is in `done` once `flush` returns."""
        self.done.append(None)
        request_id = op.request_id if isinstance(op, Withdraw) else op.event.request_id
        if request_id in self.ending:
            self._end()
        if isinstance(op, Advance):
            self.renewals.append(self.book._row(op.event, 0, self.now))
        elif isinstance(op, Open):
            self._open(op)
        else:
            self.ends.append((len(self.done) - 1, op))
            self.ending.add(request_id)
            self.ending_keys.add(op.key_id if isinstance(op, Withdraw) else op.event.key_id)

    def flush(self) -> list[Done]:
        """Do what is held back: the round is about to commit; each op's answer."""
        self._end()
        self._spend()
        return self.done

    def _open(self, op: Open) -> None:
        ledger, connection = self.ledger, self.connection
        if op.event.key_id in self.ending_keys:
            self._end()
        self._renew()
        self._spend()
        opened = ledger._charge(connection, op.event.key_id, op.reserve_micros)
        if opened:
            row = self.book._row(op.event, op.reserve_micros, self.now)
            connection.execute(ledger._sql.open_row, row)
        self.done[-1] = opened

    def _end(self) -> None:
        """Drop the rows of the ends held back, bill the closes, give back what the
        withdrawn reserved. A close settles the reservation it was told of, and moves no
        spend when its request id was billed already."""
        self._renew()
        ends, self.ends = self.ends, []
        self.ending, self.ending_keys = set(), set()
        if not ends:
            return
        ledger, connection = self.ledger, self.connection
        dropped = [
            op.request_id if isinstance(op, Withdraw) else op.event.request_id
            for _, op in ends
            if isinstance(op, Withdraw) or op.journalled
        ]
        held = _drop(ledger, connection, dropped)
        billed = ledger._record_many(
            connection, [op.event for _, op in ends if isinstance(op, Close)]
        )
        for i, op in ends:
            if isinstance(op, Withdraw):
                self._move(op.key_id, -held.get(op.request_id, 0))
            elif op.event.request_id in billed:
                self._move(op.event.key_id, op.event.revenue_micros - op.reserve_micros)
                self.done[i] = True
            else:
                ledger._check_key(connection, op.event.key_id)  # else: billed already
                self.done[i] = False

    def _move(self, key_id: int, micros: int) -> None:
        self.spends[key_id] = self.spends.get(key_id, 0) + micros

    def _renew(self) -> None:
        if self.renewals:
            self.connection.execute(self.ledger._sql.advance, self.renewals)
            self.renewals = []

    def _spend(self) -> None:
        for key_id, micros in self.spends.items():
            if micros:
                self.ledger._spend(self.connection, key_id, micros)
        self.spends = {}


def _drop(ledger: Ledger, connection: Connection, request_ids: list[str]) -> dict[str, int]:
    """Delete requests' rows; the reservation each held (none for a request without one)."""
    if not request_ids:
        return {}
    if len(request_ids) == 1:
        rows = connection.execute(ledger._sql.drop, {"request_id": request_ids[0]})
    else:
        rows = connection.execute(ledger._sql.drop_many, {"request_ids": request_ids})
    return {request_id: int(held) for request_id, held in rows}


def dump_event(event: UsageEvent) -> str:
    """An event as the JSON a journal row keeps."""
    values: dict[str, Any] = {name: getattr(event, name) for name in _FIELDS}
    for name in _TIMES:
        values[name] = values[name].isoformat()
    values["outcome"] = Outcome(event.outcome).value
    return json.dumps(values, separators=(",", ":"))


def load_event(text: str) -> UsageEvent:
    """The event a journal row keeps."""
    values: dict[str, Any] = json.loads(text)
    for name in _TIMES:
        values[name] = datetime.fromisoformat(values[name])
    values["outcome"] = Outcome(values["outcome"])
    return UsageEvent(**values)
