"""A batch's input file, checked line by line before anything runs.

Every bad line is reported (up to `MAX_ERRORS`) in OpenAI's batch error shape
`{code, message, param, line}`, lines numbered from 1 as in the file; one bad line fails
the whole batch, so nothing is run or billed.
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from tokenfactory.errors import BadInput
from tokenfactory.gateway import openai_types as oa
from tokenfactory.gateway.body import parse_json
from tokenfactory.gateway.errors import validation_error

# The endpoints a batch can name, and the request shape each line's body must have.
ENDPOINTS: dict[str, type[oa.ChatRequest] | type[oa.CompletionRequest]] = {
    "/v1/chat/completions": oa.ChatRequest,
    "/v1/completions": oa.CompletionRequest,
}
MAX_LINES = 50_000  # OpenAI's limit on requests per batch
MAX_ERRORS = 1_000  # a file of garbage is not echoed back whole


@dataclass
class Checked:
    """The lines of a valid input (number, custom_id, body as JSON), or the errors."""

    model: str = ""
    lines: list[tuple[int, str, str]] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)

    def error(self, line: int | None, code: str, message: str, param: str | None = None) -> None:
        """Note one problem."""
        if len(self.errors) < MAX_ERRORS:
            self.errors.append({"code": code, "message": message, "param": param, "line": line})


def check(content: bytes, endpoint: str, models: Collection[str], max_line_bytes: int) -> Checked:
    """Check every line of a batch input against the batch's endpoint and the floor."""
    out = Checked()
    seen: set[str] = set()
    # A byte order mark (some editors write one) is not part of the first line.
    lines = content.removeprefix(codecs.BOM_UTF8).split(b"\n")
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue  # blank lines (a trailing newline) are not requests
        if len(raw) > max_line_bytes:
            out.error(number, "request_too_large", f"line is over {max_line_bytes} bytes")
            continue
        request = _request(out, number, raw)
        if request is None:
            continue
        custom_id = request.get("custom_id")
        if not isinstance(custom_id, str) or not custom_id:
            out.error(number, "missing_custom_id", "custom_id is missing", "custom_id")
            continue
        if "\x00" in custom_id:  # no database keeps a NUL in text
            message = "custom_id holds a NUL character"
            out.error(number, "invalid_custom_id", message, "custom_id")
            continue
        if custom_id in seen:
            out.error(
                number, "duplicate_custom_id", f"custom_id {custom_id!r} repeats", "custom_id"
            )
            continue
        seen.add(custom_id)
        body = _body(out, number, request, endpoint, models)
        if body is not None:
            out.lines.append((number, custom_id, json.dumps(body, separators=(",", ":"))))
    if not out.lines and not out.errors:
        out.error(None, "empty_file", "the input file holds no requests")
    if len(out.lines) > MAX_LINES:
        out.error(None, "too_many_requests", f"a batch holds at most {MAX_LINES} requests")
    return out


def _request(out: Checked, number: int, raw: bytes) -> dict[str, Any] | None:
    try:
        request = parse_json(raw)
    except BadInput as e:
        out.error(number, "invalid_json_line", e.message.replace("request body", "line"))
        return None
    if not isinstance(request, dict):
        out.error(number, "invalid_json_line", "line is not a JSON object")
        return None
    return request


def _body(
    out: Checked, number: int, request: dict[str, Any], endpoint: str, models: Collection[str]
) -> dict[str, Any] | None:
    """The line's request body, if it fits the batch; else the reason is noted."""
    if request.get("method", "POST") != "POST":
        out.error(number, "invalid_method", "method must be POST", "method")
        return None
    if request.get("url") != endpoint:
        message = f"url {request.get('url')!r} is not the batch's endpoint {endpoint!r}"
        out.error(number, "mismatched_endpoint", message, "url")
        return None
    body = request.get("body")
    if not isinstance(body, dict):
        out.error(number, "invalid_body", "body must be a JSON object", "body")
        return None
    model = body.get("model")
    if not isinstance(model, str) or model not in models:
        message = f"model {model!r} is not served here; served: {', '.join(sorted(models))}"
        out.error(number, "model_not_found", message, "body.model")
        return None
    if out.model and model != out.model:
        message = f"model {model!r} differs from {out.model!r}: a batch runs one model"
        out.error(number, "mismatched_model", message, "body.model")
        return None
    out.model = out.model or model
    try:
        call = ENDPOINTS[endpoint].model_validate(body)
    except ValidationError as e:
        bad = validation_error(e)
        out.error(number, "invalid_request", bad.message, f"body.{bad.param}")
        return None
    if call.stream:
        out.error(number, "invalid_request", "a batch request cannot stream", "body.stream")
        return None
    return body
