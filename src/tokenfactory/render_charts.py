"""The planner's charts: latency, throughput and P&L by tier, candidate fleets, frontier.

matplotlib's object API (a `Figure` per chart, Agg canvas), never pyplot's global state,
so nothing needs a display or closing. A chart is WIDTH inches wide at DPI, so its PNG
is `WIDTH x DPI` pixels wide and its figure height x DPI high.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tokenfactory.sched import TierRule
from tokenfactory.sim.frontier import Frontier
from tokenfactory.sim.plan import Candidate
from tokenfactory.sim.timeline import Timeline

if TYPE_CHECKING:
    from matplotlib.figure import Figure

DPI = 120
WIDTH = 8.5
LATENCY_HEIGHT = 9.0
THROUGHPUT_HEIGHT = 6.5
PNL_HEIGHT = 5.0
FRONTIER_HEIGHT = 5.5
TIER_COLOURS = {
    "realtime": "tab:red",
    "standard": "tab:blue",
    "flex": "tab:orange",
    "batch": "tab:purple",
}
PERCENTILES = ("p50", "p90", "p99")


def save(fig: Figure, path: Path) -> Path:
    """Write the chart as a PNG of its own size (no cropping, so the size is known)."""
    fig.savefig(path, dpi=DPI)
    return path


def candidates_height(rows: int) -> float:
    """Height in inches of the candidate chart with `rows` bars."""
    return 1.5 + 0.35 * max(rows, 1)


def latency(summary: Mapping[str, Any], tiers: Mapping[str, TierRule]) -> Figure:
    """TTFT, TPOT and E2E p50 / p90 / p99 per tier; each tier's objective as a black dash."""
    fig = _figure(LATENCY_HEIGHT)
    per_tier = summary["per_tier"]
    names = list(per_tier)
    objectives = {
        "ttft_ms": {n: tiers[n].ttft_s for n in names if n in tiers},
        "tpot_ms": {n: tiers[n].tpot_s for n in names if n in tiers},
        "e2e_ms": {n: tiers[n].window_s for n in names if n in tiers},
    }
    labels = {"ttft_ms": "TTFT", "tpot_ms": "TPOT", "e2e_ms": "E2E"}
    width = 0.8 / len(PERCENTILES)
    for ax, (key, label) in zip(fig.subplots(3, 1), labels.items(), strict=True):
        for j, pct in enumerate(PERCENTILES):
            xs = [i + (j - 1) * width for i in range(len(names))]
            heights = [per_tier[n][key][pct] for n in names]
            ax.bar(xs, heights, width, label=pct, color=f"C{j}", alpha=0.55 + 0.15 * j)
        for i, n in enumerate(names):
            goal = objectives[key].get(n)
            if goal is not None:
                ax.hlines(goal * 1000, i - 0.45, i + 0.45, colors="black", linestyles="dashed")
        values = [per_tier[n][key][p] for n in names for p in PERCENTILES]
        values += [goal * 1000 for goal in objectives[key].values() if goal is not None]
        positive = [v for v in values if v > 0]
        if positive and max(positive) > 10 * min(positive):  # else the small bars vanish
            ax.set_yscale("log")
        ax.set_xticks(range(len(names)), names)
        ax.set_ylabel(f"{label} (ms)")
        ax.grid(axis="y", alpha=0.3)
    first = fig.axes[0]
    first.legend(loc="best", fontsize=8, ncols=3)
    first.set_title("Latency per tier: p50 / p90 / p99 (dashed: the tier's objective)", fontsize=10)
    return fig


def throughput(line: Timeline) -> Figure:
    """Output and input tokens/s over the run, stacked by tier."""
    fig = _figure(THROUGHPUT_HEIGHT)
    top, bottom = fig.subplots(2, 1, sharex=True)
    mids = (line.edges[:-1] + line.edges[1:]) / 2
    for ax, rates, what in (
        (top, line.output_per_s, "output"),
        (bottom, line.input_per_s, "input"),
    ):
        names = list(rates)
        if names:
            ax.stackplot(
                mids,
                [rates[n] for n in names],
                labels=names,
                colors=[TIER_COLOURS.get(n, "tab:gray") for n in names],
                alpha=0.8,
            )
        ax.set_ylabel(f"{what} tokens/s")
        ax.grid(alpha=0.3)
    top.legend(loc="upper right", fontsize=8)
    top.set_title(
        "Tokens/s over time by tier (output spread from first token to end; input at first token)",
        fontsize=10,
    )
    bottom.set_xlabel("time since start (s)")
    return fig


def pnl(summary: Mapping[str, Any]) -> Figure:
    """Revenue, attributed cost and profit per tier, and the idle cost no tier used."""
    fig = _figure(PNL_HEIGHT)
    ax = fig.subplots()
    per_tier = summary["per_tier"]
    names = [*per_tier, "idle"]
    idle = summary["idle_cost_usd"]
    series = {
        "revenue": ([per_tier[n]["revenue_usd"] for n in per_tier] + [0.0], "tab:green"),
        "cost": ([per_tier[n]["cost_usd"] for n in per_tier] + [idle], "tab:red"),
        "profit": ([per_tier[n]["profit_usd"] for n in per_tier] + [-idle], "tab:blue"),
    }
    width = 0.8 / len(series)
    for j, (label, (values, colour)) in enumerate(series.items()):
        xs = [i + (j - 1) * width for i in range(len(names))]
        bars = ax.bar(xs, values, width, label=label, color=colour)
        if label == "profit":
            ax.bar_label(bars, labels=[_usd(v) for v in values], fontsize=7, padding=2)
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(names)), names)
    ax.set_ylabel("$ over the simulated run")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    ax.set_title(
        f"P&L by tier: revenue {_usd(summary['revenue_usd'])}, cost {_usd(summary['cost_usd'])}, "
        f"profit {_usd(summary['profit_usd'])} (idle: replica time in no engine step)",
        fontsize=10,
    )
    return fig


def candidates(ranked: Sequence[Candidate], misses: Sequence[Candidate]) -> Figure:
    """Profit per hour per fleet: the best green, others that meet the objectives blue."""
    from matplotlib.patches import Patch

    rows = [*ranked, *misses]
    fig = _figure(candidates_height(len(rows)))
    ax = fig.subplots()
    colours = [
        "tab:green" if i == 0 else "tab:blue" if i < len(ranked) else "tab:gray"
        for i in range(len(rows))
    ]
    bars = ax.barh(
        [c.name for c in rows][::-1], [c.profit_per_hour for c in rows][::-1], color=colours[::-1]
    )
    for bar, c in zip(bars, rows[::-1], strict=True):
        if not c.feasible:
            bar.set_hatch("//")
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_xlabel("profit per hour ($/h)")
    ax.grid(axis="x", alpha=0.3)
    legend = [
        Patch(color="tab:green", label="best"),
        Patch(color="tab:blue", label="meets the objectives"),
        Patch(facecolor="tab:gray", hatch="//", label="misses them, closest first"),
    ]
    shown = legend if ranked else legend[2:]
    ax.legend(handles=shown, loc="lower right", fontsize=8)
    head = "most profitable first" if ranked else "none meets the objectives: closest misses"
    ax.set_title(f"Candidate fleets, {head}", fontsize=10)
    return fig


def frontier(f: Frontier, title: str) -> Figure:
    """Tokens/s per GPU against tokens/s per user, coloured by cost; the Pareto line."""
    from matplotlib.colors import LogNorm  # costs span orders of magnitude across a sweep
    from matplotlib.ticker import FuncFormatter

    fig = _figure(FRONTIER_HEIGHT)
    ax = fig.subplots()
    shown = [p for p in f.points if p.tokens_per_s_per_user is not None]
    xs = [p.tokens_per_s_per_user or 0.0 for p in shown]
    ys = [p.tokens_per_s_per_gpu for p in shown]
    costs = [
        math.nan if p.cost_per_million_tokens is None else p.cost_per_million_tokens for p in shown
    ]
    priced = [c for c in costs if c > 0]  # NaN compares false: unpriced points drop out
    norm = LogNorm(min(priced), max(priced)) if priced else None
    dots = ax.scatter(xs, ys, c=costs, cmap="viridis_r", norm=norm, s=60, zorder=3)
    bar = fig.colorbar(dots, ax=ax, label="cost per 1M output tokens ($)")
    dollars = FuncFormatter(lambda v, _: f"${v:,.3g}")
    bar.ax.yaxis.set_major_formatter(dollars)
    bar.ax.yaxis.set_minor_formatter(dollars)
    front = sorted((f.points[i] for i in f.pareto), key=lambda p: p.tokens_per_s_per_user or 0.0)
    ax.plot(
        [p.tokens_per_s_per_user or 0.0 for p in front],
        [p.tokens_per_s_per_gpu for p in front],
        color="tab:red",
        zorder=2,
        label="Pareto frontier",
    )
    for p, x, y in zip(shown, xs, ys, strict=True):
        ax.annotate(
            f"{p.concurrency}", (x, y), xytext=(5, 4), textcoords="offset points", fontsize=8
        )
    ax.set_xlabel("tokens/s per user (interactivity = 1000 / mean TPOT ms)")
    ax.set_ylabel("output tokens/s per GPU")
    ax.set_title(f"{title}\nlabels: concurrent clients", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right")
    return fig


def _figure(height: float) -> Figure:
    from matplotlib.figure import Figure  # imported here: the CLI starts faster without it

    return Figure(figsize=(WIDTH, height), layout="constrained")


def _usd(value: float) -> str:
    digits = 4 if abs(value) < 1 else 2  # a short run's cents still show
    return f"{'-' if value < 0 else ''}${abs(value):,.{digits}f}"
