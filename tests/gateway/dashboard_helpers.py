"""What the dashboard's tests share: mixed-tier traffic, and the ledger's P&L to compare."""

from __future__ import annotations

import threading
from datetime import datetime
from decimal import Decimal

import openai
from floor_helpers import Gateway, floors

from tokenfactory.ledger import Pnl

# One request: (tenant, service_tier asked, max_tokens, stream).
Call = tuple[str, str, int, bool]

# Every tier, two tenants, both APIs. Outputs are long enough that each request's
# attributed cost (the performance model's GPU-seconds at the catalog's H100 rate) is
# whole micro-dollars, not rounded to zero.
TRAFFIC: list[Call] = [
    ("acme", "priority", 240, True),
    ("acme", "default", 400, False),
    ("acme", "flex", 640, True),
    ("acme", "priority", 160, False),
    ("beta", "flex", 480, False),
    ("beta", "default", 320, True),
    ("beta", "flex", 800, True),
    ("beta", "default", 200, False),
]
ASK = "Write about the economics of a token factory. " * 8


def busy_traffic(tenants: tuple[str, ...], per_tier: int) -> list[Call]:
    """`per_tier` requests of each tier from each tenant, 200 to 1000 tokens long, one in
    four streamed."""
    calls: list[Call] = []
    for t, tenant in enumerate(tenants):
        for i in range(per_tier):
            for j, tier in enumerate(("priority", "default", "flex")):
                calls.append((tenant, tier, 200 + 200 * ((t + i + j) % 5), len(calls) % 4 == 0))
    return calls


def drive_traffic(gw: Gateway, traffic: list[Call] = TRAFFIC, rounds: int = 1) -> dict[str, str]:
    """Send `traffic` all at once, each call `rounds` times in a row (a client that asks
    again when answered); returns the tenants' keys once every request ended."""
    keys = {tenant: gw.key(tenant) for tenant in sorted({t for t, *_ in traffic})}
    failures: list[BaseException] = []

    def one(tenant: str, tier: str, max_tokens: int, stream: bool) -> None:
        client = openai.OpenAI(base_url=gw.v1, api_key=keys[tenant], max_retries=0, timeout=120)
        try:
            for _ in range(rounds):
                answer = client.chat.completions.create(
                    model="llama-3.1-8b",
                    messages=[{"role": "user", "content": f"{tenant} asks for {tier}. {ASK}"}],
                    max_tokens=max_tokens,
                    stream=stream,
                    service_tier=tier,  # type: ignore[arg-type]
                )
                if stream:
                    for _ in answer:  # type: ignore[union-attr]
                        pass
        except BaseException as e:  # reported below, not swallowed
            failures.append(e)

    threads = [threading.Thread(target=one, args=args) for args in traffic]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=180)
    assert not failures, failures
    assert len(gw.ledger.events()) == len(traffic) * rounds
    return keys


def ledger_pnl(gw: Gateway, since: str, until: str) -> Pnl:
    """The ledger's own P&L for the window the dashboard reported, at the floor's rates."""
    return gw.ledger.pnl(
        datetime.fromisoformat(since), datetime.fromisoformat(until), floors[-1].cost_rates()
    )


def usd(value: Decimal | None) -> str | None:
    """A dollar amount as the dashboard sends it: a fixed-point string."""
    return None if value is None else format(value, "f")
