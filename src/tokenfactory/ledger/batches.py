"""The batch book: files, batches and their lines, in the ledger's database.

Durability rests on one rule: a line's output and its usage event are written in ONE
transaction, the event keyed by the line's deterministic request id. A gateway that
stops before that commit runs the line again (nothing was delivered or billed); one that
stops after never does (the line is no longer pending).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import case, func, select, update
from sqlalchemy.orm import Session

from tokenfactory.ledger.batch_records import (
    OPEN,
    UNRUN,
    BatchRecord,
    Counts,
    FileRecord,
    LineOutcome,
    LineRecord,
    batch_record,
    file_record,
)
from tokenfactory.ledger.books import Ledger
from tokenfactory.ledger.records import UsageEvent
from tokenfactory.ledger.schema import ApiKey, BatchLineRow, BatchRow, FileRow, utcnow


def new_id(prefix: str) -> str:
    """A fresh object id in OpenAI's style (`file-...`, `batch_...`)."""
    return prefix + secrets.token_hex(12)


class BatchBook:
    """Queries and writes of the Batch API, through the ledger's one writer."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    # -- files -----------------------------------------------------------------------

    def add_file(self, tenant_id: int, filename: str, purpose: str, content: bytes) -> FileRecord:
        """Store a file for a tenant."""
        row = FileRow(
            id=new_id("file-"),
            tenant_id=tenant_id,
            filename=filename,
            purpose=purpose,
            size=len(content),
            content=content,
            created_at=utcnow(),
        )
        with self.ledger._write() as session:
            session.add(row)
            session.flush()
            return file_record(row)

    def file(self, tenant_id: int, file_id: str) -> FileRecord | None:
        """The tenant's file with this id (another tenant's is None)."""
        with self.ledger._read() as session:
            row = session.get(FileRow, file_id)
            return None if row is None or row.tenant_id != tenant_id else file_record(row)

    def content(self, tenant_id: int, file_id: str) -> bytes | None:
        """The bytes of the tenant's file with this id."""
        query = select(FileRow.content).where(FileRow.id == file_id, FileRow.tenant_id == tenant_id)
        with self.ledger._read() as session:
            return session.scalars(query).one_or_none()

    # -- batches ---------------------------------------------------------------------

    def create(
        self,
        key_id: int,
        endpoint: str,
        input_file_id: str,
        window: str,
        metadata: dict[str, str] | None,
        expires_at: datetime,
        claimed_by: str | None = None,
        lease_s: float = 0.0,
        created_at: datetime | None = None,
    ) -> BatchRecord:
        """A new batch, `validating`; claimed from birth by the gateway `claimed_by` for
        `lease_s` seconds, if given, so that no other gateway takes it up first. Created
        now, unless `created_at` (the moment its expiry was counted from) is given."""
        with self.ledger._write() as session:
            tenant_id = session.scalars(select(ApiKey.tenant_id).where(ApiKey.id == key_id)).one()
            lease = (
                None
                if claimed_by is None
                else self.ledger._now(session) + timedelta(seconds=lease_s)
            )
            row = BatchRow(
                id=new_id("batch_"),
                tenant_id=tenant_id,
                key_id=key_id,
                endpoint=endpoint,
                input_file_id=input_file_id,
                completion_window=window,
                status="validating",
                metadata_json=None if metadata is None else json.dumps(metadata),
                created_at=utcnow() if created_at is None else created_at,
                expires_at=expires_at,
                claimed_by=claimed_by,
                lease_until=lease,
            )
            session.add(row)
            session.flush()
            return batch_record(row, Counts())

    def batch(self, batch_id: str, tenant_id: int | None = None) -> BatchRecord | None:
        """The batch with this id (None if it is another tenant's, when one is given)."""
        with self.ledger._read() as session:
            row = session.get(BatchRow, batch_id)
            if row is None or (tenant_id is not None and row.tenant_id != tenant_id):
                return None
            return batch_record(row, _counts(session, [batch_id]).get(batch_id, Counts()))

    def batches(self, tenant_id: int, after: str | None, limit: int) -> list[BatchRecord]:
        """The tenant's batches, newest first, those after the batch `after`."""
        query = select(BatchRow).where(BatchRow.tenant_id == tenant_id)
        with self.ledger._read() as session:
            if after is not None:
                cursor = session.get(BatchRow, after)
                if cursor is not None and cursor.tenant_id == tenant_id:
                    query = query.where(
                        (BatchRow.created_at < cursor.created_at)
                        | ((BatchRow.created_at == cursor.created_at) & (BatchRow.id < after))
                    )
            query = query.order_by(BatchRow.created_at.desc(), BatchRow.id.desc()).limit(limit)
            rows = list(session.scalars(query))
            counts = _counts(session, [r.id for r in rows])
            return [batch_record(r, counts.get(r.id, Counts())) for r in rows]

    def open_batches(self) -> list[str]:
        """Ids of open batches no gateway holds a live claim on, oldest first."""
        with self.ledger._read() as session:
            query = (
                select(BatchRow.id)
                .where(BatchRow.status.in_(OPEN), _unclaimed(self.ledger._now(session)))
                .order_by(BatchRow.created_at)
            )
            return list(session.scalars(query))

    # -- claims: one gateway runs a batch at a time ------------------------------------

    def claim(self, batch_id: str, gateway: str, lease_s: float) -> bool:
        """Claim an open batch for `lease_s` seconds if no other gateway holds a live
        claim on it (one UPDATE: two gateways asking at once cannot both get it)."""
        with self.ledger._write() as session:
            now = self.ledger._now(session)
            claimed = session.scalars(
                update(BatchRow)
                .where(
                    BatchRow.id == batch_id,
                    BatchRow.status.in_(OPEN),
                    _unclaimed(now) | (BatchRow.claimed_by == gateway),
                )
                .values(claimed_by=gateway, lease_until=now + timedelta(seconds=lease_s))
                .returning(BatchRow.id)
            ).one_or_none()
        return claimed is not None

    def renew(self, batch_id: str, gateway: str, lease_s: float) -> str | None:
        """Extend the gateway's claim; the batch's status, or None if the claim was lost."""
        with self.ledger._write() as session:
            now = self.ledger._now(session)
            return session.scalars(
                update(BatchRow)
                .where(BatchRow.id == batch_id, BatchRow.claimed_by == gateway)
                .values(lease_until=now + timedelta(seconds=lease_s))
                .returning(BatchRow.status)
            ).one_or_none()

    def unclaim(self, batch_id: str, gateway: str) -> None:
        """Let go of the gateway's claim, so another may take the batch at once."""
        with self.ledger._write() as session:
            session.execute(
                update(BatchRow)
                .where(BatchRow.id == batch_id, BatchRow.claimed_by == gateway)
                .values(claimed_by=None, lease_until=None)
            )

    def fail(self, batch_id: str, errors: list[dict[str, Any]]) -> None:
        """Validation failed: the batch ends `failed` with per-line errors, nothing run."""
        with self.ledger._write() as session:
            session.execute(
                update(BatchRow)
                .where(BatchRow.id == batch_id, BatchRow.status == "validating")
                .values(status="failed", failed_at=utcnow(), errors_json=json.dumps(errors))
            )

    def start(self, batch_id: str, model: str, lines: Iterable[tuple[int, str, str]]) -> bool:
        """Validation passed: store the lines (number, custom_id, body); `in_progress`."""
        with self.ledger._write() as session:
            moved = session.scalars(
                update(BatchRow)
                .where(BatchRow.id == batch_id, BatchRow.status == "validating")
                .values(status="in_progress", in_progress_at=utcnow(), model=model)
                .returning(BatchRow.id)
            ).one_or_none()
            if moved is None:  # cancelled while it was being validated
                return False
            session.add_all(
                BatchLineRow(
                    batch_id=batch_id,
                    line=n,
                    custom_id=custom_id,
                    body=body,
                    status="pending",
                    input_tokens=0,
                    cached_tokens=0,
                    output_tokens=0,
                    reserved_micros=0,
                )
                for n, custom_id, body in lines
            )
        return True

    def move(self, batch_id: str, to: str, allowed_from: Sequence[str]) -> bool:
        """Set the status (and its timestamp) if the batch is in one of `allowed_from`."""
        with self.ledger._write() as session:
            moved = session.scalars(
                update(BatchRow)
                .where(BatchRow.id == batch_id, BatchRow.status.in_(allowed_from))
                .values({"status": to, f"{to}_at": utcnow()})
                .returning(BatchRow.id)
            ).one_or_none()
        return moved is not None

    # -- lines -----------------------------------------------------------------------

    def pending(self, batch_id: str) -> list[LineRecord]:
        """The lines still to run, in file order."""
        query = (
            select(BatchLineRow)
            .where(BatchLineRow.batch_id == batch_id, BatchLineRow.status == "pending")
            .order_by(BatchLineRow.line)
        )
        with self.ledger._read() as session:
            return [
                LineRecord(r.line, r.custom_id, r.body, r.reserved_micros)
                for r in session.scalars(query)
            ]

    def reserve(self, batch_id: str, line: int, key_id: int, micros: int) -> bool:
        """Reserve budget for a line, held on the line in the same transaction."""
        with self.ledger._write() as session:
            charged = self.ledger._charge(session.connection(), key_id, micros)
            if charged:
                session.execute(_line(batch_id, line).values(reserved_micros=micros))
        return charged

    def release(self, batch_id: str, key_id: int) -> None:
        """Give back the reservations of pending lines (a gateway stopped while they ran)."""
        lines = select(func.coalesce(func.sum(BatchLineRow.reserved_micros), 0)).where(
            BatchLineRow.batch_id == batch_id, BatchLineRow.status == "pending"
        )
        with self.ledger._write() as session:
            held = session.scalars(lines).one()
            if held:
                self.ledger._spend(session.connection(), key_id, -held)
                session.execute(
                    update(BatchLineRow)
                    .where(BatchLineRow.batch_id == batch_id, BatchLineRow.status == "pending")
                    .values(reserved_micros=0)
                )

    def finish(self, batch_id: str, outcome: LineOutcome, event: UsageEvent | None) -> bool:
        """A line's output and its usage event, in one transaction, once; False if the
        line was already finished (nothing changes)."""
        with self.ledger._write() as session:
            # Locked (PostgreSQL): a gateway whose lease ran out mid-line and the one that
            # took over cannot both finish it.
            row = session.get(BatchLineRow, (batch_id, outcome.line), with_for_update=True)
            if row is None or row.status != "pending":
                return False
            if event is not None:
                self.ledger._record(session.connection(), event, True, row.reserved_micros)
            elif row.reserved_micros:
                self.ledger._spend(
                    session.connection(), _key_of(session, batch_id), -row.reserved_micros
                )
            session.execute(
                _line(batch_id, outcome.line).values(
                    status=outcome.status,
                    output=outcome.output,
                    input_tokens=outcome.input_tokens,
                    cached_tokens=outcome.cached_tokens,
                    output_tokens=outcome.output_tokens,
                    reserved_micros=0,
                )
            )
        return True

    def close(self, batch_id: str, to: str, unrun: dict[int, str]) -> None:
        """End the batch: lines that never ran get their error line (`unrun`, by line
        number), output and error files are written, status `to`; one transaction."""
        now = utcnow()
        with self.ledger._write() as session:
            batch = session.get(BatchRow, batch_id)
            assert batch is not None and batch.status in OPEN, (batch_id, batch)
            held = session.scalars(
                select(func.coalesce(func.sum(BatchLineRow.reserved_micros), 0)).where(
                    BatchLineRow.batch_id == batch_id, BatchLineRow.status == "pending"
                )
            ).one()
            if held:  # reservations of lines stopped half-way go back to the key
                self.ledger._spend(session.connection(), batch.key_id, -held)
            for n, output in unrun.items():
                session.execute(
                    _line(batch_id, n).values(status=UNRUN[to], output=output, reserved_micros=0)
                )
            rows = session.execute(
                select(BatchLineRow.status, BatchLineRow.output)
                .where(BatchLineRow.batch_id == batch_id)
                .order_by(BatchLineRow.line)
            ).all()
            good = [out for status, out in rows if status == "completed" and out]
            bad = [out for status, out in rows if status != "completed" and out]
            files = ((good, "output", "output_file_id"), (bad, "error", "error_file_id"))
            for lines, purpose, column in files:
                if lines:
                    content = "".join(line + "\n" for line in lines).encode()
                    row = FileRow(
                        id=new_id("file-"),
                        tenant_id=batch.tenant_id,
                        filename=f"{batch_id}_{purpose}.jsonl",
                        purpose="batch_output",
                        size=len(content),
                        content=content,
                        created_at=now,
                    )
                    session.add(row)
                    session.flush()  # the file exists before the batch points at it
                    setattr(batch, column, row.id)
            batch.status = to
            setattr(batch, f"{to}_at", now)


def _unclaimed(now: datetime) -> Any:
    return BatchRow.claimed_by.is_(None) | (BatchRow.lease_until < now)


def _key_of(session: Session, batch_id: str) -> int:
    return session.scalars(select(BatchRow.key_id).where(BatchRow.id == batch_id)).one()


def _line(batch_id: str, line: int) -> Any:
    return update(BatchLineRow).where(BatchLineRow.batch_id == batch_id, BatchLineRow.line == line)


def _counts(session: Session, batch_ids: list[str]) -> dict[str, Counts]:
    if not batch_ids:
        return {}
    L = BatchLineRow
    rows = session.execute(
        select(
            L.batch_id,
            func.count(),
            func.sum(case((L.status == "completed", 1), else_=0)),
            func.sum(case((L.status == "failed", 1), else_=0)),
            func.sum(L.input_tokens),
            func.sum(L.cached_tokens),
            func.sum(L.output_tokens),
        )
        .where(L.batch_id.in_(batch_ids))
        .group_by(L.batch_id)
    ).all()
    return {r[0]: Counts(*(int(v or 0) for v in r[1:])) for r in rows}
