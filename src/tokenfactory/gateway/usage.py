"""GET /v1/usage: the caller's own tenant's usage and charges over a recent window.

OpenAI's usage API is organisation-wide and admin-scoped; this is the per-tenant view
a key holder needs: its tenant's tokens and what they were charged, nothing of others.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
from fastapi import APIRouter, Request

from tokenfactory.gateway.files import Authorise
from tokenfactory.ledger import Ledger, micros_to_usd
from tokenfactory.ledger.usage import UsageLine, tenant_usage


def router(ledger: Ledger, authorised: Authorise, window_s: Callable[[str], float]) -> APIRouter:
    """The /v1/usage route."""
    api = APIRouter()

    @api.get("/v1/usage")
    async def usage(request: Request, window: str = "30d") -> dict[str, Any]:
        key = await authorised(request)
        until = datetime.now(UTC)
        since = until - timedelta(seconds=window_s(window))
        lines = await anyio.to_thread.run_sync(tenant_usage, ledger, key.tenant_id, since, until)
        return {
            "object": "usage",
            "tenant": key.tenant,
            "window": window,
            "start_time": int(since.timestamp()),
            "end_time": int(until.timestamp()),
            **_totals(lines),
            "data": [{"model": u.model, "tier": u.tier, **_totals([u])} for u in lines],
        }

    return api


def _totals(lines: list[UsageLine]) -> dict[str, Any]:
    charged = sum(u.charged_micros for u in lines)
    return {
        "requests": sum(u.requests for u in lines),
        "input_tokens": sum(u.input_tokens for u in lines),
        "input_cached_tokens": sum(u.cached_tokens for u in lines),
        "output_tokens": sum(u.output_tokens for u in lines),
        # Exact: a decimal string of dollars, as the ledger keeps them.
        "charged_usd": str(micros_to_usd(charged)),
    }
