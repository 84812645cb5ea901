"""How the planner's results look to people: Rich tables from the summary dicts."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rich.console import Console
from rich.table import Column, Table


def key_figures(summary: Mapping[str, Any]) -> list[tuple[str, str]]:
    """A simulation's overall figures as (label, text) rows: the terminal's and the
    report page's table."""
    s = summary
    rows = [
        ("requests completed", f"{s['requests_completed']:,} of {s['requests']:,}"),
        ("duration", f"{s['duration_s']:,.1f} s"),
        ("output tokens/s", f"{s['output_tokens_per_s']:,.0f}"),
        ("output tokens/s per GPU", f"{s['output_tokens_per_s_per_gpu']:,.0f}"),
        ("input tokens/s", f"{s['input_tokens_per_s']:,.0f}"),
        ("TTFT mean / p99", _ms(s["ttft_ms"])),
        ("TPOT mean / p99", _ms(s["tpot_ms"])),
        ("E2E mean / p99", _ms(s["e2e_ms"])),
        ("busy share", f"{s['busy_share']:.1%}"),
        ("energy", f"{s['energy_kwh']:,.2f} kWh"),
        ("revenue", usd(s["revenue_usd"])),
        ("cost", usd(s["cost_usd"])),
    ]
    if "idle_cost_usd" in s:
        rows.append(("of which idle", usd(s["idle_cost_usd"])))
    per_million = s["cost_per_million_tokens"]
    rows += [
        ("profit", usd(s["profit_usd"])),
        ("cost per 1M output tokens", "-" if per_million is None else usd(per_million)),
        ("output tokens/s per MW", f"{s['tokens_per_mw']:,.0f}"),
    ]
    return rows


def usd(value: float) -> str:
    """`$1,234.5678`, `-$0.0123`: dollars to four places."""
    return f"{'-' if value < 0 else ''}${abs(value):,.4f}"


def simulation(out: Console, summary: dict[str, Any], title: str) -> None:
    """The overall figures, then one row per tier."""
    s = summary
    table = Table("", "value", title=title)
    rows = key_figures(s)
    for row in rows:
        table.add_row(*row)
    out.print(table)
    tiers = Table(
        Column("tier", no_wrap=True),
        "requests",
        "done",
        "refused",
        "abandoned",
        "TTFT p99 ms",
        "TPOT p99 ms",
        "SLO met",
        "goodput tok/s",
        "revenue $",
        title="Per tier",
    )
    for name, t in s["per_tier"].items():
        tiers.add_row(
            name,
            f"{t['requests']:,}",
            f"{t['requests_completed']:,}",
            f"{t['refused']:,}",
            f"{t['abandoned']:,}",
            f"{t['ttft_ms']['p99']:,.0f}",
            f"{t['tpot_ms']['p99']:,.1f}",
            f"{t['slo_attainment']:.1%}",
            f"{t['goodput_tokens_per_s']:,.0f}",
            f"{t['revenue_usd']:,.4f}",
        )
    out.print(tiers)


def _ms(stats: Mapping[str, float]) -> str:
    return f"{stats['mean']:,.1f} / {stats['p99']:,.1f} ms"


def calibration(out: Console, predictions: list[Any], medians: dict[str, float]) -> None:
    """Predicted against measured, one row per measurement, then the median errors."""
    table = Table(
        Column("#", justify="right"),
        Column("measurement"),
        "measured tok/s",
        "predicted",
        "error",
        "TTFT err",
        "TPOT err",
        title="Performance model against measurements",
    )
    for p in predictions:
        m, e = p.measurement, p.errors()
        table.add_row(
            str(m.row),
            m.label,
            f"{m.output_tokens_per_s:,.0f}",
            f"{p.output_tokens_per_s:,.0f}",
            f"{e['output_tokens_per_s']:+.1%}",
            _err(e.get("ttft_ms_mean")),
            _err(e.get("tpot_ms_mean")),
        )
    out.print(table)
    for figure, value in medians.items():
        out.print(f"median |error| of {figure}: {value:.1%}")


def _err(value: float | None) -> str:
    return "-" if value is None else f"{value:+.1%}"
