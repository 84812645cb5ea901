"""How the CLI shows things: Rich tables for people, plain dicts for `--json`."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from rich.console import Console
from rich.table import Column, Table

from tokenfactory.catalog import Catalog
from tokenfactory.catalog.schema import Row
from tokenfactory.economics import Factory, PnL, ScenarioResult
from tokenfactory.economics.hardware import Owned
from tokenfactory.economics.query import Filled


def catalog_json(cat: Catalog) -> dict[str, Any]:
    """The whole catalog as plain data."""
    return {
        "gpus": [g.model_dump(mode="json") for g in cat.gpus.values()],
        "models": [m.model_dump(mode="json") for m in cat.models.values()],
        "tiers": [t.model_dump(mode="json") for t in cat.tiers.values()],
        "energy": cat.energy.model_dump(mode="json"),
    }


def catalog_tables(out: Console, cat: Catalog) -> None:
    """One table per kind of entry."""
    gpus = Table(
        Column("id", no_wrap=True),
        "bf16 TF",
        "fp8 TF",
        "fp4 TF",
        "HBM GB",
        "TB/s",
        "kW all-in",
        "$/GPU-h",
        title="GPUs (dense TFLOPS)",
    )
    for g in cat.gpus.values():
        gpus.add_row(
            g.id,
            _n(g.bf16_tflops),
            _n(g.fp8_tflops),
            _n(g.fp4_tflops),
            _n(g.hbm_gb),
            _n(g.hbm_tb_s),
            _n(g.kw_per_gpu),
            _n(g.rent_per_gpu_hour),
        )
    models = Table(
        Column("id", no_wrap=True),
        "params B",
        "layers x hidden",
        "q/kv heads",
        "kind",
        Column("$/1M in/out", no_wrap=True),
        title="Models (params: total/active)",
    )
    for m in cat.models.values():
        kind = f"{m.attention} moe {m.experts_active}/{m.experts}" if m.is_moe else m.attention
        models.add_row(
            m.id,
            f"{_n(m.total_params_b)}/{_n(m.active_params_b)}",
            f"{m.layers} x {m.hidden_size}",
            f"{m.attention_heads}/{m.kv_heads}",
            kind,
            f"{_n(m.price_in)}/{_n(m.price_out)}",
        )
    tiers = Table(
        Column("id", no_wrap=True),
        "service_tier",
        "price x",
        "TTFT ms",
        "TPOT ms",
        "patience s",
        "preemptible",
        title="Tiers",
    )
    for t in cat.tiers.values():
        tiers.add_row(
            t.id,
            ", ".join(t.service_tier) or "(Batch API)",
            _n(t.price_ratio),
            _n(t.ttft_ms),
            _n(t.tpot_ms),
            _n(t.patience_s),
            "yes" if t.preemptible else "no",
        )
    for table in (gpus, models, tiers):
        out.print(table)
    e = cat.energy
    out.print(
        f"Energy defaults: PUE {e.pue}, ${e.electricity_per_kwh}/kWh, "
        f"{e.amortisation_years} years amortisation, idle power {e.idle_power_fraction:.0%}"
    )


def entry(out: Console, row: Row) -> None:
    """Every field of one entry, then its sources."""
    table = Table("field", "value", title=f"{row.id}: {row.name}")
    for name, value in row.model_dump().items():
        if name not in {"id", "name", "sources"}:
            table.add_row(name, str(value))
    out.print(table)
    for name, source in row.sources.items():
        out.print(f"[bold]{name}[/]: {source}", highlight=False)


def cost_json(
    factory: Factory, pnl: PnL, filled: list[Filled], moves: list[ScenarioResult] | None
) -> dict[str, Any]:
    """The `cost` result: its inputs, what was filled in, and the production function."""
    point = factory.point
    data: dict[str, Any] = {
        "inputs": {
            "gpus": point.gpus,
            "tokens_per_s_per_gpu": point.tokens_per_s_per_gpu,
            "utilization": point.utilization,
            "ownership": "owned" if isinstance(factory.hardware, Owned) else "rented",
            "cost_per_gpu_hour": factory.hardware.cost_per_gpu_hour(point.utilization),
            "input_per_output": point.input_per_output,
            "cached_share": point.cached_share,
            "prices": None
            if factory.prices is None
            else {
                "input": factory.prices.input,
                "cached_input": factory.prices.cached_input,
                "output": factory.prices.output,
            },
        },
        "filled": [{"name": f.name, "value": f.value, "source": f.source} for f in filled],
        "cost_per_hour": pnl.cost_per_hour,
        "cost_per_million_tokens": pnl.cost_per_million_tokens,
        "tokens_per_mw": pnl.tokens_per_mw,
        "joules_per_token": pnl.joules_per_token,
        "power_kw": pnl.energy_kw,
        "revenue_per_hour": pnl.revenue_per_hour,
        "profit_per_hour": pnl.profit_per_hour,
        "margin": pnl.margin,
        "break_even_price_ratio": pnl.break_even_price_ratio,
        "break_even_utilization": pnl.break_even_utilization,
    }
    if moves is not None:
        data["scenarios"] = [
            {
                "name": m.name,
                "profit_per_hour": m.profit_per_hour,
                "change_per_hour": m.change_per_hour,
                "change_share": m.change_share,
            }
            for m in moves
        ]
    return data


def cost_tables(
    out: Console,
    factory: Factory,
    pnl: PnL,
    filled: list[Filled],
    moves: list[ScenarioResult] | None,
) -> None:
    """The `cost` result for people."""
    point = factory.point
    table = Table(
        "",
        "value",
        title=f"{point.gpus} GPU(s) at {point.tokens_per_s_per_gpu:g} "
        f"output tok/s each, utilisation {point.utilization:.0%}",
    )
    rows: list[tuple[str, str]] = [
        ("cost per hour", _usd(pnl.cost_per_hour)),
        ("cost per 1M tokens", _usd(pnl.cost_per_million_tokens)),
        ("tokens/s per MW", f"{pnl.tokens_per_mw:,.0f}"),
        ("joules per token", f"{pnl.joules_per_token:.3f}"),
        ("power drawn", f"{pnl.energy_kw:,.2f} kW"),
    ]
    if pnl.revenue_per_hour is not None and pnl.profit_per_hour is not None:
        rows += [
            ("revenue per hour", _usd(pnl.revenue_per_hour)),
            ("profit per hour", _usd(pnl.profit_per_hour)),
            ("margin", _pct(pnl.margin)),
            (
                "break-even price",
                "-"
                if pnl.break_even_price_ratio is None
                else f"{_pct(pnl.break_even_price_ratio)} of these prices",
            ),
            (
                "break-even utilisation",
                "never"
                if pnl.break_even_utilization is None
                else f"{pnl.break_even_utilization:.1%}",
            ),
        ]
    for row in rows:
        table.add_row(*row)
    out.print(table)
    if pnl.revenue_per_hour is None:
        out.print("No prices: give --model (and --tier) or --price-in/--price-out for revenue.")
    if moves:
        scen = Table(
            "scenario", "profit/hour", "change", "change %", title="Scenarios, largest impact first"
        )
        for m in moves:
            scen.add_row(
                m.name, _usd(m.profit_per_hour), _usd(m.change_per_hour), _pct(m.change_share)
            )
        out.print(scen)
    if filled:
        out.print("[bold]Filled in from the catalog:[/]", highlight=False)
        for f in filled:
            out.print(f"  {f.name} = {f.value}  ({f.source})", highlight=False)


def _n(value: float | Decimal | None) -> str:
    return "-" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


def _usd(value: Decimal) -> str:
    sign = "-" if value < 0 else ""
    return f"{sign}${abs(value):,.4f}" if abs(value) < 1 else f"{sign}${abs(value):,.2f}"


def _pct(value: Decimal | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"
