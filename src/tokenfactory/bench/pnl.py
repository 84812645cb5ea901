"""The factory's profit and loss over a run, from tokenfactory's admin route."""

from __future__ import annotations

import math
from typing import Any

import httpx

from tokenfactory.bench.client import Endpoint, error_message


def window(seconds: float) -> str:
    """The gateway's window covering the last `seconds`: whole minutes, rounded up."""
    return f"{max(1, math.ceil(seconds / 60))}m"


def fetch_pnl(endpoint: Endpoint, admin_key: str, seconds: float) -> dict[str, Any]:
    """GET /v1/factory/pnl for the run's window; an `error` entry when it cannot be had.

    The gateway's window is whole minutes back from now, so it may also hold requests
    that ended shortly before the run began.
    """
    asked = window(seconds)
    try:
        response = httpx.get(
            endpoint.url + "/factory/pnl",
            params={"window": asked},
            headers={"Authorization": f"Bearer {admin_key}"},
            timeout=endpoint.connect_timeout_s + 30,
        )
    except httpx.HTTPError as e:
        return {"window_asked": asked, "error": f"{type(e).__name__}: {e}"}
    if response.status_code != 200:
        return {
            "window_asked": asked,
            "error": f"HTTP {response.status_code}: {error_message(response.text)}",
        }
    body = response.json()
    if not isinstance(body, dict):
        return {"window_asked": asked, "error": "the answer is not a JSON object"}
    return {"window_asked": asked, **body}
