"""What the dashboard's tests share: mixed-tier traffic, and the ledger's P&L to compare."""

from __future__ import annotations

import threading
from datetime import datetime
from decimal import Decimal

import openai
from floor_helpers import Gateway, MakeGateway, factory_toml, floors

from tokenfactory.ledger import Pnl

# (tenant, service_tier asked, max_tokens, stream): every tier, two tenants, both APIs.
TRAFFIC = [
    ("acme", "priority", 24, True),
    ("acme", "default", 40, False),
    ("acme", "flex", 64, True),
    ("acme", "priority", 16, False),
    ("beta", "flex", 48, False),
    ("beta", "default", 32, True),
    ("beta", "flex", 80, True),
    ("beta", "default", 20, False),
]

# A dear replica ($1 a second): the twin's short requests then cost whole micro-dollars,
# so attributed cost is a number the tests can compare, not zero on both sides.
COST_PER_HOUR = 3600


def priced_gateway(
    make_gateway: MakeGateway, replicas: list[str], concurrency: int, database: str | None = None
) -> Gateway:
    """A gateway over `replicas` (twin URLs), each at COST_PER_HOUR; SQLite by default."""
    text = factory_toml(replicas, concurrency=concurrency).replace(
        'precision = "fp8"\n', f'precision = "fp8"\ncost_per_hour = {COST_PER_HOUR}\n'
    )
    return make_gateway(text=text, database=database)


def drive_traffic(gw: Gateway) -> dict[str, str]:
    """Send TRAFFIC at once from two tenants; returns their keys once all requests ended."""
    keys = {tenant: gw.key(tenant) for tenant in sorted({t for t, *_ in TRAFFIC})}
    failures: list[BaseException] = []

    def one(tenant: str, tier: str, max_tokens: int, stream: bool) -> None:
        client = openai.OpenAI(base_url=gw.v1, api_key=keys[tenant], max_retries=0, timeout=60)
        try:
            answer = client.chat.completions.create(
                model="llama-3.1-8b",
                messages=[{"role": "user", "content": f"{tenant} asks for {tier} tokens"}],
                max_tokens=max_tokens,
                stream=stream,
                service_tier=tier,  # type: ignore[arg-type]
            )
            if stream:
                for _ in answer:  # type: ignore[union-attr]
                    pass
        except BaseException as e:  # reported below, not swallowed
            failures.append(e)

    threads = [threading.Thread(target=one, args=args) for args in TRAFFIC]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not failures, failures
    assert len(gw.ledger.events()) == len(TRAFFIC)
    return keys


def ledger_pnl(gw: Gateway, since: str, until: str) -> Pnl:
    """The ledger's own P&L for the window the dashboard reported, at the floor's rates."""
    return gw.ledger.pnl(
        datetime.fromisoformat(since), datetime.fromisoformat(until), floors[-1].cost_rates()
    )


def usd(value: Decimal | None) -> str | None:
    """A dollar amount as the dashboard sends it: a fixed-point string."""
    return None if value is None else format(value, "f")
