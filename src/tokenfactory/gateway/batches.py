"""OpenAI's Batch API: create, retrieve, list and cancel batches of one tenant.

Creating a batch only records it (`validating`); the batch runner checks its input and
runs it. A tenant sees only its own batches: another's id is a 404.
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from tokenfactory.errors import BadInput, Forbidden, NotFound
from tokenfactory.gateway.batch_input import ENDPOINTS
from tokenfactory.gateway.batch_runner import TIER, BatchRunner
from tokenfactory.gateway.body import read_json
from tokenfactory.gateway.files import Authorise, plausible
from tokenfactory.ledger.batch_records import STAMPS, BatchRecord
from tokenfactory.ledger.batches import BatchBook

CANCELLABLE = ("validating", "in_progress")


class BatchCreate(BaseModel):
    """POST /v1/batches."""

    model_config = ConfigDict(extra="forbid")
    input_file_id: str = Field(min_length=1)
    # Checked in `create` (for OpenAI's messages); the enums tell the published schema.
    endpoint: str = Field(json_schema_extra={"enum": list(ENDPOINTS)})
    completion_window: str = Field(json_schema_extra={"enum": ["24h"]})
    metadata: dict[str, str] | None = Field(
        default=None,
        max_length=16,
        json_schema_extra={
            "propertyNames": {"maxLength": 64},
            "additionalProperties": {"type": "string", "maxLength": 512},
        },
    )
    # Accepted for compatibility; this floor keeps output files until they are deleted.
    output_expires_after: dict[str, Any] | None = None


def batch_object(b: BatchRecord) -> dict[str, Any]:
    """OpenAI's batch object."""
    c = b.counts
    out: dict[str, Any] = {
        "id": b.id,
        "object": "batch",
        "endpoint": b.endpoint,
        "model": b.model,
        "errors": None if b.errors is None else {"object": "list", "data": b.errors},
        "input_file_id": b.input_file_id,
        "completion_window": b.completion_window,
        "status": b.status,
        "output_file_id": b.output_file_id,
        "error_file_id": b.error_file_id,
        "created_at": _unix(b.created_at),
        "expires_at": _unix(b.expires_at),
        "request_counts": {"total": c.total, "completed": c.completed, "failed": c.failed},
        "metadata": b.metadata,
        "usage": {
            "input_tokens": c.input_tokens,
            "input_tokens_details": {"cached_tokens": c.cached_tokens},
            "output_tokens": c.output_tokens,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": c.input_tokens + c.output_tokens,
        },
    }
    for status in STAMPS:
        out[f"{status}_at"] = _unix(b.stamps[status])
    return out


def router(book: BatchBook, runner: BatchRunner, authorised: Authorise) -> APIRouter:
    """The /v1/batches routes."""
    api = APIRouter()
    window_s = runner.floor.tiers[TIER].window_s or 86_400.0
    limit = runner.floor.factory.server.max_body_bytes

    @api.post("/v1/batches")
    async def create(request: Request) -> dict[str, Any]:
        key = await authorised(request)
        ask = BatchCreate.model_validate(await read_json(request, limit))
        if ask.endpoint not in ENDPOINTS:
            offered = ", ".join(ENDPOINTS)
            raise BadInput(
                f"endpoint {ask.endpoint!r} is not offered; use {offered}", param="endpoint"
            )
        if ask.completion_window != "24h":
            raise BadInput("completion_window must be '24h'", param="completion_window")
        for name, value in (ask.metadata or {}).items():
            if len(name) > 64 or len(value) > 512:
                raise BadInput("metadata keys hold 64 characters, values 512", param="metadata")
        if not key.allows(TIER):
            raise Forbidden(f"this key may not use the {TIER} tier")
        found = None
        if plausible(ask.input_file_id):
            found = await anyio.to_thread.run_sync(book.file, key.tenant_id, ask.input_file_id)
        if found is None:
            raise NotFound(f"no file {ask.input_file_id!r}", param="input_file_id")
        if found.purpose != "batch":
            raise BadInput(f"file {found.id} is not a batch input", param="input_file_id")
        # Its window counts from its creation: OpenAI's expires_at is created_at + window.
        now = datetime.now(UTC)
        b = await anyio.to_thread.run_sync(
            functools.partial(
                book.create,
                key.id,
                ask.endpoint,
                ask.input_file_id,
                ask.completion_window,
                ask.metadata,
                now + timedelta(seconds=window_s),
                runner.name,  # this gateway runs it: another must not take it up first
                runner.lease_s,
                created_at=now,
            )
        )
        runner.run(b.id)
        return batch_object(b)

    @api.get("/v1/batches/{batch_id}")
    async def retrieve(request: Request, batch_id: str) -> dict[str, Any]:
        key = await authorised(request)
        return batch_object(await _mine(book, batch_id, key.tenant_id))

    @api.get("/v1/batches")
    async def listed(request: Request, after: str | None = None, limit: int = 20) -> dict[str, Any]:
        key = await authorised(request)
        if not 1 <= limit <= 100:
            raise BadInput("limit must be between 1 and 100", param="limit")
        if after is not None and not plausible(after):
            after = None  # as any unknown cursor: the list from the start
        found = await anyio.to_thread.run_sync(book.batches, key.tenant_id, after, limit + 1)
        data = [batch_object(b) for b in found[:limit]]
        return {
            "object": "list",
            "data": data,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
            "has_more": len(found) > limit,
        }

    @api.post("/v1/batches/{batch_id}/cancel")
    async def cancel(request: Request, batch_id: str) -> dict[str, Any]:
        key = await authorised(request)
        b = await _mine(book, batch_id, key.tenant_id)
        if b.status in ("cancelling", "cancelled"):
            return batch_object(b)
        if not await anyio.to_thread.run_sync(book.move, batch_id, "cancelling", CANCELLABLE):
            b = await _mine(book, batch_id, key.tenant_id)
            if b.status not in ("cancelling", "cancelled"):
                raise BadInput(f"a batch that is {b.status} cannot be cancelled", param="batch_id")
            return batch_object(b)
        runner.cancel(batch_id)
        return batch_object(await _mine(book, batch_id, key.tenant_id))

    return api


async def _mine(book: BatchBook, batch_id: str, tenant_id: int) -> BatchRecord:
    found = None
    if plausible(batch_id):
        found = await anyio.to_thread.run_sync(book.batch, batch_id, tenant_id)
    if found is None:
        raise NotFound(f"no batch {batch_id!r}", param="batch_id")
    return found


def _unix(when: datetime | None) -> int | None:
    return None if when is None else int(when.timestamp())
