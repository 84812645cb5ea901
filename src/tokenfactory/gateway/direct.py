"""The completion routes served straight from ASGI, ahead of FastAPI's router.

Every request through FastAPI's router pays for matching each route in turn, its
exception middleware and per-route wrappers, and dependency solving, and every event of a
stream passes through their `send` wrappers (in benchmarks/gateway_compare.py about a
tenth of the gateway's CPU per request). The two routes that carry the traffic need none
of it (they read their bodies themselves), so this middleware hands a POST to either path
to its handler and maps our errors to responses as `errors.install` does. Anything else,
those paths' other methods included, goes on to FastAPI; so does an unexpected error, to
the 500 that `errors.install` sends.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from tokenfactory.errors import TokenfactoryError
from tokenfactory.gateway.errors import error_response, validation_error

Handler = Callable[[Request], Awaitable[Response]]


class DirectRoutes:
    """ASGI middleware: POST to a path in `routes` runs its handler, with no router."""

    def __init__(self, app: ASGIApp, routes: Mapping[str, Handler]) -> None:
        self.app = app
        self.routes = dict(routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve a completion POST here; pass anything else on."""
        handler = (
            self.routes.get(scope["path"])
            if scope["type"] == "http" and scope["method"] == "POST"
            else None
        )
        if handler is None:
            await self.app(scope, receive, send)
            return
        try:
            response = await handler(Request(scope, receive))
        except TokenfactoryError as e:
            response = error_response(e)
        except ValidationError as e:
            response = error_response(validation_error(e))
        await response(scope, receive, send)
