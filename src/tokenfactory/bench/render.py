"""A run as people see it: a live progress line while it runs, then Rich tables."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Column, Table

from tokenfactory.bench.compare import Row
from tokenfactory.bench.sample import OK, RATE_LIMITED, UNFINISHED, Sample


class LiveProgress:
    """Counts requests as they end: completed, refused (429), failed, output tokens/s."""

    def __init__(self, console: Console, duration_s: float | None) -> None:
        self.progress = Progress(
            TextColumn("[bold]bench[/]"),
            BarColumn(),
            TextColumn("{task.description}"),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        )
        self.task = self.progress.add_task("starting", total=duration_s)
        self.ok = self.refused = self.failed = self.tokens = 0
        self.last_end = 0.0

    def __enter__(self) -> LiveProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def __call__(self, s: Sample) -> None:
        """Count one finished request."""
        if s.status == OK:
            self.ok += 1
            self.tokens += s.completion_tokens
        elif s.status == RATE_LIMITED:
            self.refused += 1
        elif s.status != UNFINISHED:
            self.failed += 1
        self.last_end = max(self.last_end, s.end_s or 0.0)
        rate = self.tokens / self.last_end if self.last_end else 0.0
        self.progress.update(
            self.task,
            completed=self.last_end,
            description=f"{self.ok} done, {self.refused} refused (429), {self.failed} failed, "
            f"{rate:,.0f} output tok/s",
        )


def _f(value: float, digits: int = 1) -> str:
    return f"{value:,.{digits}f}"


def summary(out: Console, s: Mapping[str, Any], title: str) -> None:
    """The run's throughput, latency per tier, service levels and errors."""
    by = s["by_status"]
    out.print(
        f"[bold]{title}[/]: {s['requests_completed']}/{s['requests']} completed in "
        f"{_f(s['duration_s'])} s, {by['rate_limited']} refused (429), "
        f"{by['http_error'] + by['transport_error']} failed, {by['unfinished']} cut off; "
        f"{_f(s['output_tokens_per_s'])} output tok/s, {_f(s['input_tokens_per_s'])} input "
        f"tok/s, goodput {_f(s['goodput_tokens_per_s'])} tok/s",
        highlight=False,
    )
    t = s["tokens"]
    out.print(
        f"tokens: {t['input']:,} in, {t['output']:,} out "
        f"({t['from_usage']} requests counted by the endpoint's usage, {t['counted']} by bench)",
        highlight=False,
    )
    out.print(
        "all tiers, p50 / p99 ms: "
        + ", ".join(
            f"{name} {_f(s[key]['p50'])} / {_f(s[key]['p99'])}"
            for name, key in (
                ("TTFT", "ttft_ms"),
                ("TPOT", "tpot_ms"),
                ("ITL", "itl_ms"),
                ("E2E", "e2e_ms"),
            )
        ),
        highlight=False,
    )
    table = Table(
        Column("tier", no_wrap=True),
        "done/sent",
        "429",
        "failed",
        "TTFT p50/p99 ms",
        "TPOT p50/p99 ms",
        "E2E p50/p99 ms",
        "SLO",
        "goodput tok/s",
    )
    for name, row in s["per_tier"].items():
        table.add_row(
            name,
            f"{row['requests_completed']}/{row['requests']}",
            str(row["refused"]),
            str(row["errors"]),
            *(
                f"{_f(row[k]['p50'])} / {_f(row[k]['p99'])}"
                for k in ("ttft_ms", "tpot_ms", "e2e_ms")
            ),
            f"{row['slo_attainment']:.1%}",
            _f(row["goodput_tokens_per_s"]),
        )
    out.print(table)
    for e in s["error_messages"]:
        out.print(f"[red]{e['count']} x[/] {e['message']}", highlight=False)
    if "pnl" in s:
        pnl(out, s["pnl"])


def pnl(out: Console, p: Mapping[str, Any]) -> None:
    """The factory's books over the run's window, as the gateway reported them."""
    if "error" in p:
        out.print(f"P&L: not available ({p['error']})", highlight=False)
        return
    tokens = p["tokens"]
    out.print(
        f"P&L over {p['window_asked']}: {tokens['input']:,} input and "
        f"{tokens['output']:,} output tokens, revenue ${p['revenue_usd']:.6f}, "
        f"cost ${p['cost_usd']:.6f} + idle ${p['idle_cost_usd']:.6f}, "
        f"profit ${p['profit_usd']:.6f}",
        highlight=False,
    )


def comparison(out: Console, rows: Sequence[Row], title: str) -> None:
    """Predicted (the planner's simulation) beside measured (this run)."""
    table = Table("figure", "predicted", "measured", "measured vs predicted", title=title)
    for r in rows:
        digits = 3 if r.figure.endswith("SLO attainment") else 1
        diff = "" if r.difference is None else f"{r.difference:+.1%}"
        table.add_row(r.figure, _f(r.predicted, digits), _f(r.measured, digits), diff)
    out.print(table)
