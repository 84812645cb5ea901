"""The one exception hierarchy: raise anywhere, map once at the edge.

Each error carries an HTTP status and OpenAI's error `type` and `code`, so the gateway can
render `{"error": {message, type, param, code}}` and the CLI can print one line and exit 2.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class TokenfactoryError(Exception):
    """Base of every error tokenfactory raises on purpose."""

    status: int = 500
    type: str = "server_error"
    code: str | None = None

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


class BadInput(TokenfactoryError):
    """The caller gave something that cannot be used."""

    status = 400
    type = "invalid_request_error"
    code = "invalid_value"


class UnknownId(BadInput):
    """An id that names nothing; the message suggests the nearest valid ids."""

    status = 404
    code = "not_found"

    def __init__(
        self, kind: str, wanted: str, valid: Iterable[str], *, param: str | None = None
    ) -> None:
        choices = sorted(valid)
        near = difflib.get_close_matches(wanted, choices, n=3, cutoff=0.5)
        if not near:
            lowered = wanted.lower()
            near = [c for c in choices if lowered in c.lower() or c.lower() in lowered][:3]
        hint = f"did you mean {', '.join(near)}?" if near else f"valid: {', '.join(choices)}"
        super().__init__(f"unknown {kind} {wanted!r}; {hint}", param=param)
        self.kind = kind
        self.wanted = wanted
        self.suggestions = near


class NotFound(BadInput):
    """An object that does not exist for this caller (another tenant's reads the same)."""

    status = 404
    code = "not_found"


class ConfigError(BadInput):
    """A data or configuration file that cannot be read; the message says where."""

    code = "invalid_file"


class Unauthorized(TokenfactoryError):
    """No key, or a key that is not ours (or revoked)."""

    status = 401
    type = "invalid_request_error"
    code = "invalid_api_key"


class Forbidden(TokenfactoryError):
    """A valid key asking for something it may not have (a tier, an admin route)."""

    status = 403
    type = "invalid_request_error"
    code = "forbidden"


class PayloadTooLarge(BadInput):
    """A request body over the gateway's limit."""

    status = 413
    code = "payload_too_large"


class UnsupportedMediaType(BadInput):
    """A request body in a format the route does not read (its Content-Type)."""

    status = 415
    code = "unsupported_media_type"


class RateLimited(TokenfactoryError):
    """Too much, too soon: the client should retry after `retry_after_s`."""

    status = 429
    type = "rate_limit_exceeded"
    code = "rate_limit_exceeded"

    def __init__(self, message: str, *, retry_after_s: float, param: str | None = None) -> None:
        super().__init__(message, param=param)
        self.retry_after_s = retry_after_s


class QuotaExceeded(TokenfactoryError):
    """The key's dollar budget is spent."""

    status = 429
    type = "insufficient_quota"
    code = "insufficient_quota"


class EngineUnavailable(TokenfactoryError):
    """No healthy engine could serve the request, or the engine failed mid-way."""

    status = 503
    type = "server_error"
    code = "engine_unavailable"
