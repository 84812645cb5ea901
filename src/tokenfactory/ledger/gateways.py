"""Gateway leases: which gateways sharing a ledger are alive.

Each gateway holds a row in `gateways` whose lease it renews while it runs; one whose
lease is past is dead, and the requests it left running are billed by another
(`OpenRequests.recover`). Lease times are the database's clock where it has one to share
(PostgreSQL), as batch claims are, so gateways whose clocks disagree still agree on who
is dead.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from tokenfactory.ledger.books import Ledger
from tokenfactory.ledger.schema import GatewayRow


@dataclass(frozen=True, slots=True)
class GatewayLease:
    """A gateway's row: its name, when it started and until when it counts as alive."""

    name: str
    started_at: datetime
    lease_until: datetime


class Gateways:
    """The leases of the gateways on one ledger."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    def join(self, name: str, lease_s: float) -> None:
        """Take a lease for the gateway `name` (again, if its row lapsed or was removed)."""
        with self.ledger._write() as session:
            now = self.ledger._now(session)
            row = {"name": name, "started_at": now, "lease_until": now + timedelta(seconds=lease_s)}
            insert = self.ledger._insert(GatewayRow)
            session.execute(
                insert.on_conflict_do_update(
                    index_elements=["name"], set_={"lease_until": insert.excluded.lease_until}
                ),
                [row],
            )

    def renew(self, name: str, lease_s: float) -> bool:
        """Extend a live lease; False when it had lapsed (or its row is gone): another
        gateway may have billed this one's running requests, and `join` takes a new one."""
        with self.ledger._write() as session:
            now = self.ledger._now(session)
            renewed = session.scalars(
                update(GatewayRow)
                .where(GatewayRow.name == name, GatewayRow.lease_until >= now)
                .values(lease_until=now + timedelta(seconds=lease_s))
                .returning(GatewayRow.name)
            ).one_or_none()
        return renewed is not None

    def leave(self, name: str) -> None:
        """Drop the gateway's lease: it stopped, whatever it left running is no one's."""
        with self.ledger._write() as session:
            session.execute(delete(GatewayRow).where(GatewayRow.name == name))

    def all(self) -> list[GatewayLease]:
        """Every gateway row, live or not yet swept away, oldest first."""
        query = select(GatewayRow).order_by(GatewayRow.started_at, GatewayRow.name)
        with self.ledger._read() as session:
            return [
                GatewayLease(r.name, r.started_at, r.lease_until) for r in session.scalars(query)
            ]


def live_names(now: datetime) -> Any:
    """A query of the names of gateways whose lease holds at `now`."""
    return select(GatewayRow.name).where(GatewayRow.lease_until >= now)


def forget_dead(session: Session, now: datetime) -> None:
    """Drop the rows of gateways whose lease is past (a late one joins again)."""
    session.execute(delete(GatewayRow).where(GatewayRow.lease_until < now))
