"""The journal of running requests: what each would be billed if the gateway died now.

A request with a budget reservation opens its row in the transaction that reserves; a
stream's row is advanced (one transaction for every stream that asks at once) before the
client is sent tokens the row does not yet cover. The final usage event is written in the
transaction that deletes the row. Each row names the gateway running it; once that
gateway is dead (its lease in `gateways` is past, see ledger/gateways.py), any other bills
the row as an `interrupted` event and settles its reservation: the row's request id makes
that happen at most once, whichever of the two writes it first.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, or_, select
from sqlalchemy.orm import Session

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


class OpenRequests:
    """The open requests of one ledger, as the gateway `owner` opens and bills them."""

    def __init__(self, ledger: Ledger, owner: str | None = None) -> None:
        self.ledger = ledger
        self.owner = owner

    def open(self, event: UsageEvent, reserve_micros: int) -> bool:
        """Reserve budget and open the request's row at once; False (nothing written) when
        the key's budget cannot cover the reservation."""
        with self.ledger._write() as session:
            if not self.ledger._charge(session, event.key_id, reserve_micros):
                return False
            now = utcnow()
            session.add(
                OpenRequestRow(
                    request_id=event.request_id,
                    key_id=event.key_id,
                    reserved_micros=reserve_micros,
                    event=dump_event(event),
                    opened_at=now,
                    updated_at=now,
                    owner=self.owner,
                )
            )
        return True

    def advance(self, events: Sequence[UsageEvent]) -> None:
        """Make these the rows' events, opening rows not there yet, in one transaction."""
        if not events:
            return
        now = utcnow()
        rows = [
            {
                "request_id": e.request_id,
                "key_id": e.key_id,
                "reserved_micros": 0,
                "event": dump_event(e),
                "opened_at": now,
                "updated_at": now,
                "owner": self.owner,
            }
            for e in events
        ]
        insert = self.ledger._insert(OpenRequestRow)
        upsert = insert.on_conflict_do_update(
            index_elements=["request_id"],
            set_={"event": insert.excluded.event, "updated_at": insert.excluded.updated_at},
        )
        with self.ledger._write() as session:
            session.execute(upsert, rows)

    def close(self, event: UsageEvent, reserve_micros: int, *, journalled: bool) -> bool:
        """Write the final event, settle the reservation and drop the row, at once; False
        when the request id was already billed (nothing changes then)."""
        with self.ledger._write() as session:
            if journalled:
                _drop(session, event.request_id)
            return self.ledger._record(session, event, True, reserve_micros)

    def withdraw(self, request_id: str, key_id: int) -> None:
        """A request refused before it ran: drop its row and give back what it reserved."""
        with self.ledger._write() as session:
            held = _drop(session, request_id)
            if held:
                self.ledger._spend(session, key_id, -held)

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
                self.ledger._record(session, load_event(row.event), True, row.reserved_micros)
                session.delete(row)
            forget_dead(session, now)
        return len(rows)


def _drop(session: Session, request_id: str) -> int:
    """Delete a request's row; the reservation it held (0 if there was none)."""
    held = session.scalars(
        delete(OpenRequestRow)
        .where(OpenRequestRow.request_id == request_id)
        .returning(OpenRequestRow.reserved_micros)
    ).one_or_none()
    return held or 0


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
