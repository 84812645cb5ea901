"""The factory's live dashboard: the page at `/`, its assets, and the JSON it polls.

The page and its assets are static package data served by the gateway itself (no CDN,
no build step), so it works with no internet. The page asks for the admin key once,
keeps it in the browser's localStorage and polls `/v1/factory/dashboard`, an admin route.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from importlib.resources import files

import anyio
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from tokenfactory.gateway.dashboard_data import floor_state, snapshot
from tokenfactory.gateway.runtime import Floor
from tokenfactory.gateway.windows import bounds

STATIC = ("tokenfactory.gateway", "static")
# Everything the page loads comes from the gateway itself; nothing from elsewhere.
CSP = "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'"
WINDOW = "15m"  # what the page shows unless it asks for another window


def install(
    app: FastAPI,
    floor: Floor,
    admin: Callable[[Request], Awaitable[None]],
) -> None:
    """Add the dashboard's routes: `/`, `/dashboard/*` and `/v1/factory/dashboard`."""
    page = files(STATIC[0]).joinpath(STATIC[1], "index.html").read_text(encoding="utf-8")
    app.mount("/dashboard", StaticFiles(packages=[STATIC]), name="dashboard")

    @app.get("/", include_in_schema=False)
    async def index() -> HTMLResponse:
        return HTMLResponse(page, headers={"Content-Security-Policy": CSP})

    @app.get("/v1/factory/dashboard")
    async def dashboard(
        request: Request,
        window: str | None = None,
        since: str | None = None,
        until: str | None = None,
        buckets: int = 60,
    ) -> JSONResponse:
        await admin(request)
        start, end = bounds(floor, window, since, until, default=WINDOW)
        # The dispatcher lives on the event loop: read it here, the ledger in a thread.
        state = floor_state(floor)
        data = await anyio.to_thread.run_sync(lambda: snapshot(floor, start, end, buckets, state))
        asked = window or (None if since is not None else WINDOW)
        return JSONResponse({"window": asked, **data}, headers={"Cache-Control": "no-store"})
