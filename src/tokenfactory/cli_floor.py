"""The floor's commands: `serve`, `keys`, `report`. Parse, call library code, print."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from tokenfactory import render_floor
from tokenfactory.catalog import load_catalog
from tokenfactory.config.factory import load_factory
from tokenfactory.errors import BadInput
from tokenfactory.ledger import Ledger

keys_app = typer.Typer(help="Create, list and revoke API keys.", no_args_is_help=True)

ConfigFile = Annotated[
    Path | None, typer.Option("--config", help="Factory TOML file (default: the default factory).")
]
Database = Annotated[
    str | None, typer.Option("--database", help="Ledger URL (default: the factory file's).")
]
CatalogFile = Annotated[
    Path | None, typer.Option("--catalog", help="TOML file that adds to or overrides the catalog.")
]


def _database(config: Path | None, database: str | None, catalog: Path | None) -> str:
    return database or load_factory(config, load_catalog(catalog)).server.database


def serve(
    config: ConfigFile = None,
    host: Annotated[str | None, typer.Option(help="Address to listen on.")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on.")] = None,
    database: Database = None,
    catalog: CatalogFile = None,
) -> None:
    """Run the factory: the OpenAI-compatible gateway over its engines."""
    import uvicorn

    from tokenfactory.gateway.app import create_app
    from tokenfactory.gateway.runtime import build_floor

    cat = load_catalog(catalog)
    factory = load_factory(config, cat)
    floor = build_floor(factory, cat, database)
    server = factory.server
    listen_host, listen_port = host or server.host, server.port if port is None else port
    console = Console(stderr=True)
    console.print(
        f"tokenfactory: {len(factory.replicas)} replica(s), policy "
        f"{factory.scheduler.policy}, ledger {database or server.database}"
    )
    if not server.admin_key:
        console.print(f"admin key (for /v1/factory/*): {floor.admin_key}", highlight=False)
    console.print(
        f"serving on http://{listen_host}:{listen_port}/v1 — make a key with "
        f"`tokenfactory keys create --tenant you`, then use it with any OpenAI client:\n"
        f"  OpenAI(base_url='http://{listen_host}:{listen_port}/v1', api_key=KEY)",
        highlight=False,
    )
    # Named, not "auto": a gateway that quietly fell back to asyncio's loop and the
    # pure-Python h11 parser would spend more CPU on every request. No access log: at
    # this level it prints nothing, but its line's parts were still made per response.
    uvicorn.run(
        create_app(floor),
        host=listen_host,
        port=listen_port,
        log_level="warning",
        access_log=False,
        loop="uvloop",
        http="httptools",
    )


@keys_app.command("create")
def keys_create(
    tenant: Annotated[str, typer.Option(help="Who pays.")],
    tier: Annotated[
        str, typer.Option(help="Default tier when the request names none.")
    ] = "standard",
    allowed_tiers: Annotated[
        str | None, typer.Option(help="Comma-separated tiers the key may use (default: all).")
    ] = None,
    budget_usd: Annotated[str | None, typer.Option(help="Dollar budget (default: none).")] = None,
    tokens_per_minute: Annotated[int | None, typer.Option(help="Token rate limit.")] = None,
    admin: Annotated[bool, typer.Option("--admin", help="May call the admin routes.")] = False,
    config: ConfigFile = None,
    database: Database = None,
    catalog: CatalogFile = None,
) -> None:
    """Create a key; the key itself is printed once, as the last line."""
    budget = None
    if budget_usd is not None:
        try:
            budget = Decimal(budget_usd)
        except InvalidOperation:
            raise BadInput(f"--budget-usd: {budget_usd!r} is not a number") from None
    ledger = Ledger(_database(config, database, catalog))
    ledger.migrate()
    tiers = [t.strip() for t in allowed_tiers.split(",")] if allowed_tiers else None
    record, secret = ledger.create_key(
        tenant,
        default_tier=tier,
        allowed_tiers=tiers,
        budget_usd=budget,
        tokens_per_minute=tokens_per_minute,
        is_admin=admin,
    )
    ledger.close()
    typer.echo(
        f"key {record.prefix}... for tenant {record.tenant} (default tier {record.default_tier})"
    )
    typer.echo(secret)


@keys_app.command("list")
def keys_list(
    config: ConfigFile = None, database: Database = None, catalog: CatalogFile = None
) -> None:
    """List keys (never their secrets)."""
    ledger = Ledger(_database(config, database, catalog))
    ledger.migrate()
    render_floor.keys(Console(soft_wrap=True), ledger.list_keys())
    ledger.close()


def report(
    since: Annotated[
        str | None,
        typer.Option(help="Window: 15m, 1h, 7d or an ISO date-time (default: the first event)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    config: ConfigFile = None,
    database: Database = None,
    catalog: CatalogFile = None,
) -> None:
    """The factory's P&L: tokens, revenue, cost, idle cost, profit, per tier/tenant/replica."""
    from tokenfactory.gateway.runtime import replica_cost, with_energy

    cat = load_catalog(catalog)
    factory = load_factory(config, cat)
    costs = {r.name: replica_cost(r, cat) for r in factory.replicas}
    rates = {name: c.usd_per_s for name, c in costs.items()}
    ledger = Ledger(database or factory.server.database)
    ledger.migrate()
    until = datetime.now(UTC)
    pnl = with_energy(
        ledger.pnl(None if since is None else _since(since, until), until, rates), costs
    )
    ledger.close()
    if as_json:
        print(json.dumps(pnl, indent=2, default=render_floor.plain))
    else:
        render_floor.pnl(Console(soft_wrap=True), pnl)


def _since(text: str, now: datetime) -> datetime:
    units = {"m": 60, "h": 3600, "d": 86400}
    if text[-1:] in units and text[:-1].isdigit():
        return now - timedelta(seconds=int(text[:-1]) * units[text[-1]])
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise BadInput(f"--since: {text!r} is neither like 1h nor an ISO date-time") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)
