"""Lines of a batch's output and error files, in OpenAI's shapes.

A line that ran: `{"id", "custom_id", "response": {"status_code", "request_id", "body"},
"error": null}`, the body being what the endpoint would have answered (its error object
for a failed request). A line that never ran (the batch was cancelled or expired):
`{"id", "custom_id", "response": null, "error": {"code", "message"}}`.
"""

from __future__ import annotations

import json
from typing import Any

from tokenfactory.errors import TokenfactoryError
from tokenfactory.gateway.errors import error_body
from tokenfactory.ledger.batch_records import BatchRecord, LineOutcome, LineRecord

# The error each way of ending a batch early gives the lines that never ran.
UNRUN_ERRORS = {
    "cancelled": ("batch_cancelled", "the batch was cancelled before this request ran"),
    "expired": ("batch_expired", "the completion window ended before this request ran"),
}


def failed_line(b: BatchRecord, line: LineRecord, rid: str, e: TokenfactoryError) -> LineOutcome:
    """A line the floor answered with an error, as the error file's line."""
    body = error_body(e.message, e.type, e.code, e.param)
    response = {"status_code": e.status, "request_id": rid, "body": body}
    return LineOutcome(line.line, "failed", line_json(b, line, response, None))


def line_json(
    b: BatchRecord, line: LineRecord, response: dict[str, Any] | None, error: dict[str, Any] | None
) -> str:
    """One line of an output or error file, in OpenAI's shape."""
    out = {
        "id": f"batch_req_{b.id.removeprefix('batch_')}_{line.line}",
        "custom_id": line.custom_id,
        "response": response,
        "error": error,
    }
    return json.dumps(out, separators=(",", ":"))
