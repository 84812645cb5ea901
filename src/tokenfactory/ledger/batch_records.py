"""What the batch book stores and returns: files, batches, their lines and counts."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tokenfactory.ledger.schema import BatchRow, FileRow

# Statuses a batch leaves only by the runner's hand; a restarted gateway resumes these.
OPEN = ("validating", "in_progress", "finalizing", "cancelling")
# The status each way of ending gives the lines that never ran.
UNRUN = {"cancelled": "cancelled", "expired": "expired"}


@dataclass(frozen=True, slots=True)
class FileRecord:
    """A stored file, without its content."""

    id: str
    tenant_id: int
    filename: str
    purpose: str
    size: int
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Counts:
    """A batch's lines by outcome, and the tokens they used."""

    total: int = 0
    completed: int = 0
    failed: int = 0
    input_tokens: int = 0
    cached_tokens: int = 0
    output_tokens: int = 0


@dataclass(frozen=True, slots=True)
class BatchRecord:
    """A batch as stored, with its line counts."""

    id: str
    tenant_id: int
    key_id: int
    endpoint: str
    input_file_id: str
    completion_window: str
    model: str | None
    status: str
    metadata: dict[str, str] | None
    errors: list[dict[str, Any]] | None
    output_file_id: str | None
    error_file_id: str | None
    created_at: datetime
    expires_at: datetime
    stamps: dict[str, datetime | None]  # status -> when the batch entered it
    counts: Counts


@dataclass(frozen=True, slots=True)
class LineRecord:
    """A batch line still to run."""

    line: int
    custom_id: str
    body: str
    reserved_micros: int


@dataclass(frozen=True, slots=True)
class LineOutcome:
    """How a line ended: its status, its output (or error) file line, its tokens."""

    line: int
    status: str  # completed or failed
    output: str
    input_tokens: int = 0
    cached_tokens: int = 0
    output_tokens: int = 0


STAMPS = ("in_progress", "finalizing", "completed", "failed", "expired", "cancelling", "cancelled")


def file_record(row: FileRow) -> FileRecord:
    """A file row as the record the API hands out."""
    return FileRecord(row.id, row.tenant_id, row.filename, row.purpose, row.size, row.created_at)


def batch_record(row: BatchRow, counts: Counts) -> BatchRecord:
    """A batch row and its counts as one record."""
    return BatchRecord(
        id=row.id,
        tenant_id=row.tenant_id,
        key_id=row.key_id,
        endpoint=row.endpoint,
        input_file_id=row.input_file_id,
        completion_window=row.completion_window,
        model=row.model,
        status=row.status,
        metadata=None if row.metadata_json is None else json.loads(row.metadata_json),
        errors=None if row.errors_json is None else json.loads(row.errors_json),
        output_file_id=row.output_file_id,
        error_file_id=row.error_file_id,
        created_at=row.created_at,
        expires_at=row.expires_at,
        stamps={s: getattr(row, f"{s}_at") for s in STAMPS},
        counts=counts,
    )
