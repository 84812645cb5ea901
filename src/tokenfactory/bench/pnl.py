"""The factory's profit and loss over a run, from tokenfactory's admin route."""

from __future__ import annotations

from typing import Any

import httpx

from tokenfactory.bench.client import Endpoint, error_message


def fetch_pnl(endpoint: Endpoint, admin_key: str, since: float, until: float) -> dict[str, Any]:
    """GET /v1/factory/pnl for exactly [since, until) (unix seconds: the run's start and
    end on this machine's clock); an `error` entry when it cannot be had."""
    asked = f"the run's {until - since:.1f} s"
    try:
        response = httpx.get(
            endpoint.url + "/factory/pnl",
            # Microseconds, as the ledger keeps its times.
            params={"since": f"{since:.6f}", "until": f"{until:.6f}"},
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
