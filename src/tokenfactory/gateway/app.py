"""The gateway's HTTP app: `create_app(floor)` wires routes, auth and errors.

Composition root with `runtime.build_floor`: the app gets everything it uses passed in.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
from collections.abc import AsyncIterator
from datetime import datetime
from decimal import Decimal
from typing import Any

import anyio
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from tokenfactory.errors import (
    EngineUnavailable,
    Forbidden,
    Unauthorized,
)
from tokenfactory.gateway import batches, dashboard, errors, files, openapi, usage
from tokenfactory.gateway import openai_types as oa
from tokenfactory.gateway.batch_runner import BatchRunner
from tokenfactory.gateway.body import read_json
from tokenfactory.gateway.direct import DirectApp
from tokenfactory.gateway.generate import Generator
from tokenfactory.gateway.keys import KeyCache
from tokenfactory.gateway.limits import RateLimiter, TokenBuckets
from tokenfactory.gateway.liveness import Liveness
from tokenfactory.gateway.metrics import FloorMetrics
from tokenfactory.gateway.query import SingleValuedQuery
from tokenfactory.gateway.redis_buckets import RedisBuckets
from tokenfactory.gateway.runtime import Floor
from tokenfactory.gateway.windows import bounds, window_s
from tokenfactory.ledger import KeyRecord, hash_secret
from tokenfactory.ledger.batches import BatchBook

log = logging.getLogger("tokenfactory.gateway")


def create_app(floor: Floor) -> FastAPI:
    """The gateway app over a built floor (engines started in its lifespan)."""
    metrics = FloorMetrics()
    generator = Generator(floor, metrics, _rate_limiter(floor, metrics))
    book = BatchBook(floor.ledger)
    runner = BatchRunner(generator, book)
    liveness = Liveness(floor.ledger, generator.name, floor.factory.server.batch_lease_s)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await anyio.to_thread.run_sync(floor.ledger.migrate)
        # Requests a dead gateway left running are billed for what they sent, once.
        await liveness.start()
        for engine in floor.engines:
            await engine.start()
        probe = asyncio.create_task(_probe(floor))
        await runner.start()
        try:
            yield
        finally:
            # Each part stops even if one before it fails (a ledger gone at shutdown must
            # not leave the engines' connections open: uvloop refuses to close over them).
            # Last pushed, first stopped; the first failure is raised once all have run.
            async with contextlib.AsyncExitStack() as stopping:
                stopping.push_async_callback(anyio.to_thread.run_sync, floor.ledger.close)
                stopping.push_async_callback(anyio.to_thread.run_sync, generator.journal.stop)
                stopping.push_async_callback(generator.buckets.close)
                for engine in reversed(floor.engines):
                    stopping.push_async_callback(engine.stop)
                stopping.callback(probe.cancel)
                stopping.push_async_callback(liveness.stop)
                stopping.push_async_callback(runner.stop)

    # No /docs or /redoc: FastAPI's pages load their scripts from a CDN. The schema is
    # served at /openapi.json for any OpenAPI tool.
    app = DirectApp(
        title="tokenfactory", version="0.1.0", lifespan=lifespan, docs_url=None, redoc_url=None
    )
    errors.install(app)
    limit = floor.factory.server.max_body_bytes

    keys = KeyCache(floor.ledger)

    async def authorised(request: Request) -> KeyRecord:
        key = await keys.find(_bearer(request))
        if key is None or not key.active:
            raise Unauthorized("invalid or revoked API key")
        return key

    async def admin(request: Request) -> None:
        """The factory file's admin key, or an active key made with `keys create --admin`."""
        secret = _bearer(request)
        # Digests of equal length: the comparison's time tells nothing, not even a length.
        if hmac.compare_digest(hash_secret(secret), hash_secret(floor.admin_key)):
            return
        key = await keys.find(secret)
        if key is None or not key.active or not key.is_admin:
            raise Forbidden("this route needs an admin key")

    app.include_router(files.router(book, authorised))
    app.include_router(batches.router(book, runner, authorised))
    app.include_router(usage.router(floor.ledger, authorised, window_s))

    async def chat(request: Request) -> Response:
        key = await authorised(request)  # before reading a body a stranger sent
        call = oa.ChatRequest.model_validate(await read_json(request, limit))
        return await generator.handle(key, call)

    async def completions(request: Request) -> Response:
        key = await authorised(request)  # before reading a body a stranger sent
        call = oa.CompletionRequest.model_validate(await read_json(request, limit))
        return await generator.handle(key, call)

    # Their POSTs are served ahead of FastAPI (gateway/direct.py).
    app.post_direct("/v1/chat/completions", chat)
    app.post_direct("/v1/completions", completions)
    app.add_middleware(SingleValuedQuery)

    @app.get("/v1/models")
    async def models(request: Request) -> dict[str, Any]:
        await authorised(request)
        data = [
            {"id": name, "object": "model", "created": 0, "owned_by": "tokenfactory"}
            for name in floor.models
        ]
        return {"object": "list", "data": data}

    @app.get("/v1/factory/pnl")
    async def pnl(
        request: Request,
        window: str | None = None,
        since: str | None = None,
        until: str | None = None,
    ) -> JSONResponse:
        await admin(request)
        start, end = bounds(floor, window, since, until, default="1h")
        report = await anyio.to_thread.run_sync(lambda: floor.pnl(start, end))
        return JSONResponse(json.loads(json.dumps(report, default=_plain)))

    dashboard.install(app, floor, admin)

    @app.get("/metrics")
    async def prometheus() -> Response:
        d = floor.dispatcher
        for tier in floor.tiers:
            metrics.queue_depth.labels(tier).set(d.queued_by_tier().get(tier, 0))
        for r in d.replicas:
            metrics.running.labels(r.name).set(len(r.running))
            metrics.healthy.labels(r.name).set(1 if r.healthy else 0)
        return Response(metrics.render(), media_type="text/plain; version=0.0.4")

    @app.get("/health")
    async def health() -> dict[str, Any]:
        replicas = {r.name: r.healthy for r in floor.dispatcher.replicas}
        if not any(replicas.values()):
            raise EngineUnavailable("no healthy replica")
        return {"status": "ok", "replicas": replicas}

    openapi.install(app)
    return app


def _rate_limiter(floor: Floor, metrics: FloorMetrics) -> RateLimiter:
    """Buckets in Redis when the factory names one (shared by its gateways), else here."""
    server = floor.factory.server
    if server.redis is None:
        return TokenBuckets()
    return RedisBuckets(server.redis, server.redis_prefix, metrics.registry)


def _bearer(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, secret = header.partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        raise Unauthorized("missing API key: send 'Authorization: Bearer <key>'")
    return secret.strip()


def _plain(value: object) -> object:
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"cannot serialise {type(value).__name__}")


async def _probe(floor: Floor) -> None:
    """Read engines' load signals; bring replicas back once their health check answers."""
    while True:
        await asyncio.sleep(floor.factory.server.health_probe_s)
        for r in floor.dispatcher.replicas:
            try:
                if r.healthy:
                    r.engine_load = await r.engine.load()
                elif await r.engine.healthy():
                    log.info("replica %s is healthy again", r.name)
                    floor.dispatcher.mark(r, healthy=True)
            except Exception:  # a failed probe means: no signals, or still down
                r.engine_load = None
