"""The completion routes served straight from ASGI, ahead of all of FastAPI.

Every request through FastAPI pays for its telemetry check, its middleware stack (each
layer's call, and ServerErrorMiddleware's `send` wrapper that every event of a stream
passes), matching each route in turn, per-route wrappers and dependency solving: in
benchmarks/gateway_compare.py about a tenth of the gateway's CPU per request. The two
routes that carry the traffic need none of it (they read their bodies themselves), so
the app hands a POST to either path to its handler before FastAPI sees it, and answers
as FastAPI would: our errors mapped as `errors.install` maps them, an unexpected one
logged, answered with its 500 if nothing was sent yet, and raised on to the server.
Anything else, those paths' other methods included, goes on to FastAPI; so does a POST
with a query string (the completions take none), for SingleValuedQuery to judge.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI
from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from tokenfactory.errors import TokenfactoryError
from tokenfactory.gateway.errors import error_response, unexpected, validation_error

Handler = Callable[[Request], Awaitable[Response]]


class DirectApp(FastAPI):
    """FastAPI, but a POST to a direct route runs its handler with no framework between."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.direct: dict[str, Handler] = {}

    def post_direct(self, path: str, handler: Handler) -> None:
        """Serve POST `path` with `handler`. FastAPI keeps the route too: for the schema,
        for answering other methods with 405, and for a POST that carries a query."""
        self.post(path)(handler)
        self.direct[path] = handler

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve a direct route's POST here; pass anything else on to FastAPI."""
        handler = (
            self.direct.get(scope["path"])
            if scope["type"] == "http" and scope["method"] == "POST"
            else None
        )
        if handler is None or scope.get("query_string"):
            await super().__call__(scope, receive, send)
            return
        scope["app"] = self  # as Starlette sets it, for Request.app
        request = Request(scope, receive)
        # Every response's first message is its start, and a start that fails leaves
        # nothing to answer on: once a response is called, it counts as started.
        started = False
        try:
            try:
                response = await handler(request)
            except TokenfactoryError as e:
                response = error_response(e)
            except ValidationError as e:
                response = error_response(validation_error(e))
            started = True
            await response(scope, receive, send)
        except Exception as e:
            answer = unexpected(request, e)
            if not started:
                await answer(scope, receive, send)
            raise  # as ServerErrorMiddleware does: the server logs it, closes if need be
