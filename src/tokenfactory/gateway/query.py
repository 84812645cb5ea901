"""One value per query parameter: a parameter given twice is refused, not half-read.

No route takes a list in its query string, and the frameworks would quietly keep one of
the values (`?after=a&after=b` reads as `b`): the client would get an answer to a question
it did not ask. So a repeated name is a 400 that names it, before any route runs.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from starlette.types import ASGIApp, Receive, Scope, Send

from tokenfactory.errors import BadInput
from tokenfactory.gateway.errors import error_response


class SingleValuedQuery:
    """ASGI middleware: refuse a request whose query string repeats a parameter."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        query: bytes = scope.get("query_string", b"") if scope["type"] == "http" else b""
        if query:  # the completion POSTs carry none: they pass at the cost of this test
            seen: set[str] = set()
            for name, _ in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
                if name in seen:
                    message = f"query parameter {name!r} is given more than once"
                    await error_response(BadInput(message, param=name))(scope, receive, send)
                    return
                seen.add(name)
        await self.app(scope, receive, send)
