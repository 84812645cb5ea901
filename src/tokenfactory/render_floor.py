"""How the floor's books look to people: keys and the P&L as Rich tables."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from rich.console import Console
from rich.table import Table

from tokenfactory.ledger import KeyRecord


def plain(value: object) -> object:
    """JSON for Decimal (a number) and datetime (ISO text)."""
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"cannot serialise {type(value).__name__}")


def keys(out: Console, records: list[KeyRecord]) -> None:
    """One row per key."""
    table = Table(
        "id",
        "key",
        "tenant",
        "tier",
        "allowed",
        "budget $",
        "spent $",
        "tok/min",
        "admin",
        "revoked",
        title="API keys",
    )
    for k in records:
        table.add_row(
            str(k.id),
            k.prefix + "...",
            k.tenant,
            k.default_tier,
            ",".join(k.allowed_tiers) if k.allowed_tiers else "all",
            "-" if k.budget_micros is None else f"{k.budget_micros / 1e6:.2f}",
            f"{Decimal(k.spent_micros) / 1_000_000:.6f}",
            str(k.tokens_per_minute or "-"),
            "yes" if k.is_admin else "",
            "yes" if k.revoked_at else "",
        )
    out.print(table)


def pnl(out: Console, p: dict[str, Any]) -> None:
    """The totals, then per tier, tenant and replica."""
    t = p["tokens"]
    out.print(
        f"tokens in {t['input']:,} (cached {t['cached']:,}), out {t['output']:,}; "
        f"revenue ${p['revenue_usd']:.6f}, cost ${p['cost_usd']:.6f}, "
        f"idle ${p['idle_cost_usd']:.6f}, "
        f"profit ${p['profit_usd']:.6f}, margin {_pct(p['margin'])}, "
        f"cost per 1M tokens {_usd(p['cost_per_million_tokens'])}, "
        f"tokens per joule {_number(p['tokens_per_joule'])}",
        highlight=False,
    )
    for title, rows in (
        ("per tier", p["per_tier"]),
        ("per tenant", p["per_tenant"]),
        ("per replica", p["per_replica"]),
    ):
        table = Table("", "requests", "tokens out", "revenue $", "cost $", "profit $", title=title)
        for name, row in rows.items():
            r: dict[str, Any] = dict(row)
            table.add_row(
                name,
                str(r.get("requests", "")),
                f"{r['tokens']['output']:,}",
                f"{r['revenue_usd']:.6f}",
                f"{r['cost_usd']:.6f}",
                f"{r['profit_usd']:.6f}",
            )
        out.print(table)


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _pct(value: Decimal | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def _usd(value: Decimal | None) -> str:
    return "-" if value is None else f"${value:.6f}"
