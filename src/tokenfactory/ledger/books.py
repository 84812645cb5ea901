"""`Ledger`: keys, budgets and usage events, written through one writer.

Writes: every write is one transaction. On SQLite they also hold `Ledger`'s
`threading.Lock` (one writer per process) and begin with `BEGIN IMMEDIATE` under a busy
timeout (other processes, such as `tokenfactory keys create`, wait their turn). On
PostgreSQL no lock is taken: each write is a single atomic statement or ON CONFLICT insert
(a journal round that moves several keys' spends locks their rows first, in id order:
ledger/open_requests.py). The writes every request makes (charge, spend, record) are Core
statements built once (ledger/statements.py), run on a bare connection, not the ORM.

The API is synchronous; the gateway calls it through `anyio.to_thread.run_sync`, and
writes its requests' usage through one writer, many to a transaction
(gateway/journal.py).
"""

from __future__ import annotations

import contextlib
import hmac
import threading
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from pathlib import Path

from sqlalchemy import Connection, Engine, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from tokenfactory.errors import BadInput
from tokenfactory.ledger.engine import WRITE, make_engine, upgrade
from tokenfactory.ledger.keys import KEYS, check_key_args, hash_secret, key_record, new_secret
from tokenfactory.ledger.records import (
    KeyNotFound,
    KeyRecord,
    Outcome,
    UsageEvent,
    micros_to_usd,
    require_utc,
    usd_to_micros,
)
from tokenfactory.ledger.report import Pnl, pnl
from tokenfactory.ledger.schema import ApiKey, Tenant, UsageRow, utcnow
from tokenfactory.ledger.statements import statements


class Ledger:
    """The factory's books on one database (SQLite file or PostgreSQL URL)."""

    def __init__(self, url: str) -> None:
        self.engine: Engine = make_engine(url)
        self._writer = self.engine.execution_options(**{WRITE: True})
        self._sqlite = self.engine.dialect.name == "sqlite"
        self._insert = sqlite.insert if self._sqlite else postgresql.insert
        self._lock = threading.Lock()
        self._sql = statements(self._insert, arrays=not self._sqlite)

    @classmethod
    def sqlite(cls, path: str | Path) -> Ledger:
        """A ledger in one SQLite file (created on first write)."""
        return cls(f"sqlite:///{path}")

    def migrate(self) -> None:
        """Bring the schema to the newest revision; does nothing when already there."""
        with self._write_lock():
            upgrade(self.engine)

    def close(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()

    @contextlib.contextmanager
    def _write_lock(self) -> Iterator[None]:
        with self._lock if self._sqlite else contextlib.nullcontext():
            yield

    @contextlib.contextmanager
    def _write(self) -> Iterator[Session]:
        with self._write_lock(), Session(self._writer) as session, session.begin():
            yield session

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[Connection]:
        """A write transaction on a bare connection, for the Core statements of `_sql`."""
        with self._write_lock(), self._writer.begin() as connection:
            yield connection

    def _read(self) -> Session:
        return Session(self.engine)

    def _now(self, session: Session) -> datetime:
        """The database's clock where it has one to share (PostgreSQL), so gateways whose
        clocks disagree still agree on leases; SQLite serves one host: its clock."""
        if self._sqlite:
            return utcnow()
        now: datetime = session.scalars(select(func.now())).one()
        return now

    # -- tenants and keys ------------------------------------------------------------

    def create_key(
        self,
        tenant: str,
        *,
        default_tier: str = "standard",
        allowed_tiers: tuple[str, ...] | list[str] | None = None,
        budget_usd: Decimal | None = None,
        tokens_per_minute: int | None = None,
        is_admin: bool = False,
    ) -> tuple[KeyRecord, str]:
        """Create a key for `tenant` (created if new); the secret is returned only here."""
        tiers = check_key_args(tenant, default_tier, allowed_tiers, budget_usd, tokens_per_minute)
        secret = new_secret()
        with self._write() as session:
            session.execute(
                self._insert(Tenant)
                .values(name=tenant, created_at=utcnow())
                .on_conflict_do_nothing(index_elements=["name"])
            )
            tenant_id = session.scalars(select(Tenant.id).where(Tenant.name == tenant)).one()
            key = ApiKey(
                tenant_id=tenant_id,
                key_hash=hash_secret(secret),
                prefix=secret[:8],
                default_tier=default_tier,
                allowed_tiers=",".join(tiers) if tiers is not None else None,
                budget_micros=None if budget_usd is None else usd_to_micros(budget_usd),
                spent_micros=0,
                tokens_per_minute=tokens_per_minute,
                is_admin=is_admin,
                created_at=utcnow(),
            )
            session.add(key)
            session.flush()
            key_id = key.id
        record = self.get_key(key_id)
        assert record is not None  # just committed
        return record, secret

    def find_key(self, secret: str) -> KeyRecord | None:
        """The active key with this secret, or None (unknown or revoked)."""
        digest = hash_secret(secret)
        with self._read() as session:
            row = session.execute(KEYS.where(ApiKey.key_hash == digest)).one_or_none()
        if row is None or not hmac.compare_digest(row[0].key_hash, digest):
            return None
        record = key_record(row[0], row[1])
        return record if record.active else None

    def get_key(self, key_id: int) -> KeyRecord | None:
        """The key with this id, revoked or not."""
        with self._read() as session:
            row = session.execute(KEYS.where(ApiKey.id == key_id)).one_or_none()
        return None if row is None else key_record(row[0], row[1])

    def list_keys(self) -> list[KeyRecord]:
        """Every key, oldest first."""
        with self._read() as session:
            rows = session.execute(KEYS.order_by(ApiKey.id)).all()
        return [key_record(key, name) for key, name in rows]

    def revoke_key(self, key_id: int) -> KeyRecord:
        """Revoke a key (again is harmless); raises KeyNotFound for an unknown id."""
        with self._write() as session:
            session.execute(
                update(ApiKey)
                .where(ApiKey.id == key_id, ApiKey.revoked_at.is_(None))
                .values(revoked_at=utcnow())
            )
        record = self.get_key(key_id)
        if record is None:
            raise KeyNotFound(f"no API key with id {key_id}")
        return record

    # -- budgets -------------------------------------------------------------------

    def charge(self, key_id: int, micros: int) -> bool:
        """Add `micros` to the key's spend only if it stays within budget; True if it did."""
        with self._transaction() as connection:
            return self._charge(connection, key_id, micros)

    def _charge(self, connection: Connection, key_id: int, micros: int) -> bool:
        """`charge` inside the caller's transaction (the request journal opens with it)."""
        if micros < 0:
            raise BadInput("charge() takes a non-negative amount; use spend() to refund")
        params = {"key_id": key_id, "micros": micros}
        if connection.execute(self._sql.charge, params).first() is not None:
            return True
        self._check_key(connection, key_id)
        return False

    def spend(self, key_id: int, micros: int) -> None:
        """Add `micros` (negative releases a reservation) to the key's spend, budget or not."""
        with self._transaction() as connection:
            self._spend(connection, key_id, micros)

    def _spend(self, connection: Connection, key_id: int, micros: int) -> None:
        params = {"key_id": key_id, "micros": micros}
        if connection.execute(self._sql.spend, params).first() is None:
            raise KeyNotFound(f"no API key with id {key_id}")

    def _check_key(self, connection: Connection, key_id: int) -> None:
        """Raise KeyNotFound unless the key exists."""
        if connection.execute(self._sql.key, {"key_id": key_id}).first() is None:
            raise KeyNotFound(f"no API key with id {key_id}")

    def remaining_budget(self, key_id: int) -> Decimal | None:
        """Dollars left on the key's budget (negative if overshot); None when unlimited."""
        record = self.get_key(key_id)
        if record is None:
            raise KeyNotFound(f"no API key with id {key_id}")
        left = record.remaining_micros
        return None if left is None else micros_to_usd(left)

    # -- usage ---------------------------------------------------------------------

    def record(
        self, event: UsageEvent, *, charge_key: bool = False, reserved_micros: int = 0
    ) -> bool:
        """Write an event once; False if its request_id is already there (nothing changes).

        With `charge_key`, the key's spend moves by `revenue_micros - reserved_micros` in
        the same transaction, and only when the event is new: a retried write never
        charges twice, and a reservation made with `charge()` is settled exactly once.
        """
        with self._transaction() as connection:
            return self._record(connection, event, charge_key, reserved_micros)

    def _record(
        self, connection: Connection, event: UsageEvent, charge_key: bool, reserved_micros: int
    ) -> bool:
        """`record` inside the caller's transaction (the batch book writes lines with it)."""
        values = _event_values(event)
        values["recorded_at"] = utcnow()
        if connection.execute(self._sql.record, values).first() is None:
            self._check_key(connection, event.key_id)  # else: billed already
            return False
        if charge_key:
            self._spend(connection, event.key_id, event.revenue_micros - reserved_micros)
        return True

    def _record_many(self, connection: Connection, events: Sequence[UsageEvent]) -> set[str]:
        """Write the events not yet there, charging nothing, in one statement however many
        (a journal round bills its closes with it); the request ids of those that were new.
        Not new: billed already, or its key does not exist (but for several on SQLite, where
        such an event fails the statement)."""
        if not events:
            return set()
        if len(events) == 1:  # `_record`'s INSERT .. SELECT: no cheaper, and on SQLite too a
            # missing key writes nothing (the caller's KeyNotFound), not an IntegrityError
            event = events[0]
            values = _event_values(event)
            values["recorded_at"] = utcnow()
            new = connection.execute(self._sql.record, values).first() is not None
            return {event.request_id} if new else set()
        now = utcnow()
        rows = [_event_values(event) | {"recorded_at": now} for event in events]
        if self._sqlite:  # executemany: one multi-row INSERT
            return set(connection.execute(self._sql.record_many, rows).scalars())
        columns = {name: [row[name] for row in rows] for name in rows[0]}  # one array each
        return set(connection.execute(self._sql.record_many, columns).scalars())

    def event(self, request_id: str) -> UsageEvent | None:
        """The event recorded for this request id, if any."""
        with self._read() as session:
            row = session.scalars(
                select(UsageRow).where(UsageRow.request_id == request_id)
            ).one_or_none()
        return None if row is None else _event(row)

    def events(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        key_id: int | None = None,
        limit: int = 1000,
    ) -> list[UsageEvent]:
        """Events that ended in [since, until), oldest first, at most `limit`."""
        require_utc("since", since)
        require_utc("until", until)
        query = select(UsageRow).order_by(UsageRow.ended_at, UsageRow.id).limit(limit)
        if since is not None:
            query = query.where(UsageRow.ended_at >= since)
        if until is not None:
            query = query.where(UsageRow.ended_at < until)
        if key_id is not None:
            query = query.where(UsageRow.key_id == key_id)
        with self._read() as session:
            return [_event(row) for row in session.scalars(query)]

    def pnl(
        self,
        since: datetime | None = None,
        until: datetime | None = None,
        replica_cost_per_s: Mapping[str, Decimal] | None = None,
    ) -> Pnl:
        """Profit and loss over [since, until); see `report.pnl`."""
        with self._read() as session:
            return pnl(session, since, until, replica_cost_per_s or {})


_EVENT_FIELDS = tuple(UsageEvent.__dataclass_fields__)


def _event_values(event: UsageEvent) -> dict[str, object]:
    values = {name: getattr(event, name) for name in _EVENT_FIELDS}
    values["outcome"] = Outcome(event.outcome).value
    return values


def _event(row: UsageRow) -> UsageEvent:
    values = {name: getattr(row, name) for name in _EVENT_FIELDS}
    values["outcome"] = Outcome(row.outcome)
    return UsageEvent(**values)
