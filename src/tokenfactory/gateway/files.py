"""OpenAI's Files API, as far as batches need it: upload an input, read a file back.

Uploads are multipart forms (what OpenAI's clients send), parsed with the standard
library's MIME parser. A tenant sees only its own files: another's id is a 404.
"""

from __future__ import annotations

import email.parser
import email.policy
from collections.abc import Awaitable, Callable
from email.message import EmailMessage
from typing import Any

import anyio
from fastapi import APIRouter, Request, Response

from tokenfactory.errors import BadInput, NotFound, PayloadTooLarge
from tokenfactory.ledger import KeyRecord
from tokenfactory.ledger.batch_records import FileRecord
from tokenfactory.ledger.batches import BatchBook

MAX_FILE_BYTES = 200_000_000  # OpenAI's limit on a batch input file
MAX_ID = 64  # the ledger's id columns
MAX_FILENAME = 255  # the ledger's filename column
Authorise = Callable[[Request], Awaitable[KeyRecord]]


def file_object(f: FileRecord) -> dict[str, Any]:
    """OpenAI's file object."""
    return {
        "id": f.id,
        "object": "file",
        "bytes": f.size,
        "created_at": int(f.created_at.timestamp()),
        "expires_at": None,
        "filename": f.filename,
        "purpose": f.purpose,
        "status": "processed",
        "status_details": None,
    }


def plausible(object_id: str) -> bool:
    """Whether an id could be one this floor made: short printable ASCII. Any other
    (a NUL, which PostgreSQL cannot even compare, or megabytes) names nothing."""
    return 0 < len(object_id) <= MAX_ID and object_id.isascii() and object_id.isprintable()


def router(book: BatchBook, authorised: Authorise) -> APIRouter:
    """The /v1/files routes."""
    api = APIRouter()

    @api.post("/v1/files")
    async def upload(request: Request) -> dict[str, Any]:
        key = await authorised(request)
        form = _form(request.headers.get("content-type", ""), await _read(request))
        purpose = form.get("purpose")
        if purpose is None or purpose[1] != b"batch":
            raise BadInput(
                "purpose must be 'batch' (the only files this floor keeps)", param="purpose"
            )
        if "file" not in form:
            raise BadInput("no file in the form: send it as the 'file' field", param="file")
        filename, content = form["file"]
        if filename is not None and (len(filename) > MAX_FILENAME or not filename.isprintable()):
            raise BadInput(
                f"the file's name must be printable and at most {MAX_FILENAME} characters",
                param="file",
            )
        stored = await anyio.to_thread.run_sync(
            book.add_file, key.tenant_id, filename or "input.jsonl", "batch", content
        )
        return file_object(stored)

    @api.get("/v1/files/{file_id}")
    async def retrieve(request: Request, file_id: str) -> dict[str, Any]:
        key = await authorised(request)
        found = None
        if plausible(file_id):
            found = await anyio.to_thread.run_sync(book.file, key.tenant_id, file_id)
        if found is None:
            raise NotFound(f"no file {file_id!r}", param="file_id")
        return file_object(found)

    @api.get("/v1/files/{file_id}/content")
    async def content(request: Request, file_id: str) -> Response:
        key = await authorised(request)
        data = None
        if plausible(file_id):
            data = await anyio.to_thread.run_sync(book.content, key.tenant_id, file_id)
        if data is None:
            raise NotFound(f"no file {file_id!r}", param="file_id")
        return Response(data, media_type="application/jsonl")

    return api


async def _read(request: Request) -> bytes:
    """The request body, refused past MAX_FILE_BYTES."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_FILE_BYTES:
        raise PayloadTooLarge(f"files are limited to {MAX_FILE_BYTES} bytes", param="file")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FILE_BYTES:
            raise PayloadTooLarge(f"files are limited to {MAX_FILE_BYTES} bytes", param="file")
    return bytes(body)


def _form(content_type: str, body: bytes) -> dict[str, tuple[str | None, bytes]]:
    """The fields of a multipart/form-data body: name -> (filename, bytes)."""
    if not content_type.lower().startswith("multipart/form-data"):
        raise BadInput("upload the file as multipart/form-data")
    head = f"Content-Type: {content_type}\r\n\r\n".encode("latin-1", "replace")
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    if not isinstance(message, EmailMessage) or not message.is_multipart():
        raise BadInput("the multipart form could not be read")
    fields: dict[str, tuple[str | None, bytes]] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        if isinstance(name, str) and isinstance(payload, bytes):
            fields[name] = (part.get_filename(), payload)
    return fields
