"""The frontier and the plan as people see them: Rich tables, a reason in words, files."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Column, Table

from tokenfactory import render_charts as charts
from tokenfactory.config.scenario import Scenario
from tokenfactory.sim.frontier import Frontier
from tokenfactory.sim.plan import Candidate, Plan

TOP_ROWS = 15  # candidates shown in the table and the chart; --json has them all
TOP_MISSES = 5  # closest misses shown in the chart after them


def frontier_title(s: Scenario) -> str:
    """`"llama-3.3-70b fp8 on 8 x H200-SXM, vllm TP2"`."""
    return (
        f"{s.model.name} {s.model.precision} on {s.hardware.gpus} x {s.hardware.gpu}, "
        f"{s.engine.kind} TP{s.engine.tensor_parallel}"
    )


def frontier_table(out: Console, f: Frontier, title: str) -> None:
    """One row per concurrency level; Pareto-optimal rows starred."""
    table = Table(
        "clients", "tok/s/GPU", "tok/s/user", "TTFT p50", "TTFT p99", "$/1M", "tok/s/MW", "Pareto",
        title=f"{title} (TTFT in ms, $ per 1M output tokens)",
    )  # fmt: skip
    for i, p in enumerate(f.points):
        table.add_row(
            f"{p.concurrency:,}",
            f"{p.tokens_per_s_per_gpu:,.0f}",
            _num(p.tokens_per_s_per_user, ",.1f"),
            f"{p.ttft_p50_ms:,.0f}",
            f"{p.ttft_p99_ms:,.0f}",
            _num(p.cost_per_million_tokens, ",.3f"),
            f"{p.tokens_per_mw:,.0f}",
            "*" if i in f.pareto else "",
        )
    out.print(table)


def write_frontier(folder: Path, f: Frontier, title: str) -> list[Path]:
    """Write frontier.json and frontier.png into `folder` (made if missing)."""
    folder.mkdir(parents=True, exist_ok=True)
    data = folder / "frontier.json"
    data.write_text(json.dumps(f.to_json(), indent=2) + "\n")
    return [data, charts.save(charts.frontier(f, title), folder / "frontier.png")]


def plan_json(plan: Plan) -> dict[str, Any]:
    """`{"candidates": [...ranked...], "best": {...} | None, "reason": "...", ...}`."""
    return {
        "candidates": [_candidate(c) for c in plan.candidates],
        "best": _candidate(plan.candidates[0]) if plan.candidates else None,
        "reason": reason(plan),
        "objectives": plan.objectives,
        "misses": [_candidate(c) for c in plan.misses],
        "skipped": plan.skipped,
    }


def _candidate(c: Candidate) -> dict[str, Any]:
    return {"name": c.name, **dataclasses.asdict(c)}


def reason(plan: Plan) -> str:
    """Why the best candidate wins (or why none does), in one paragraph of numbers."""
    if not plan.candidates:
        text = f"No fleet of at most {plan.max_gpus} GPUs meets every objective"
        if not plan.misses:
            return f"{text}, and none could be simulated: {'; '.join(plan.skipped)}."
        m = plan.misses[0]
        return f"{text}; the closest, {_fleet(m)}, reaches {_attained(m, plan)}."
    best = plan.candidates[0]
    text = (
        f"{_fleet(best)} meets {_attained(best, plan)} and makes "
        f"${best.profit_usd:,.2f} profit on the simulated demand (${best.profit_per_hour:,.2f}/h)"
    )
    ties = [c.policy for c in plan.candidates[1:] if _same(c, best) and _tie(c, best)]
    if ties:
        text += f"; {' and '.join(ties)} do as well on the same GPUs"
    rival = next((c for c in plan.candidates if not _same(c, best)), None)
    if rival is None:
        return f"{text}. It is the only fleet that meets every objective."
    gap = best.profit_usd - rival.profit_usd
    text += (
        f". That is ${gap:,.2f} ({gap / abs(rival.profit_usd or 1):.1%}) more than the next "
        f"fleet, {_fleet(rival)} (${rival.profit_usd:,.2f}), "
    )
    saved, earned = rival.cost_usd - best.cost_usd, best.revenue_usd - rival.revenue_usd
    if saved >= earned:
        text += f"because it costs ${saved:,.2f} less to run ({_per_million(best, rival)})"
        if abs(earned) < 0.01 * abs(best.revenue_usd) + 0.005:
            return f"{text}, for about the same revenue."
        if earned > 0:
            return f"{text}, and earns ${earned:,.2f} more."
        return f"{text}, though it earns ${-earned:,.2f} less."
    text += f"because it earns ${earned:,.2f} more: {_why_revenue(best, rival)}"
    if saved < -0.005:
        return f"{text}, though it costs ${-saved:,.2f} more to run."
    return f"{text}."


def _fleet(c: Candidate) -> str:
    return f"{c.gpu} x{c.gpus} TP{c.tensor_parallel} with {c.policy}"


def _same(a: Candidate, b: Candidate) -> bool:
    return (a.gpu, a.gpus, a.tensor_parallel) == (b.gpu, b.gpus, b.tensor_parallel)


def _tie(a: Candidate, b: Candidate) -> bool:
    return abs(a.profit_usd - b.profit_usd) < 0.005


def _attained(c: Candidate, plan: Plan) -> str:
    parts = [
        f"{tier} {c.slo_attainment[tier]:.1%} (objective {goal:.0%})"
        for tier, goal in plan.objectives.items()
        if tier in c.slo_attainment
    ]
    return " / ".join(parts) or "every objective (no tier with an objective was offered)"


def _per_million(best: Candidate, rival: Candidate) -> str:
    a, b = best.cost_per_million_tokens, rival.cost_per_million_tokens
    if a is None or b is None or b == 0:
        return "no tokens to price"
    return (
        f"${a:,.3f} vs ${b:,.3f} per 1M tokens, {1 - a / b:.0%} lower: "
        f"{best.tokens_per_s_per_gpu:,.0f} vs {rival.tokens_per_s_per_gpu:,.0f} tok/s per GPU "
        f"at ${best.cost_per_hour / best.gpus:,.2f} vs ${rival.cost_per_hour / rival.gpus:,.2f} "
        "per GPU-hour"
    )


def _why_revenue(best: Candidate, rival: Candidate) -> str:
    a, b = best.slo_attainment.get("realtime"), rival.slo_attainment.get("realtime")
    if a is not None and b is not None and a > b:
        return f"realtime meets its objective {a:.1%} vs {b:.1%}, so fewer pay only standard"
    served = best.requests_completed - rival.requests_completed
    return f"it serves {served:,} more requests" if served > 0 else "its requests pay more"


def plan_tables(out: Console, plan: Plan) -> None:
    """The ranked candidates (or the closest misses), then the reason."""
    rows, title = plan.candidates, "Fleets that meet the objectives, most profitable first"
    if not rows:
        rows, title = plan.misses, "No fleet meets the objectives; closest misses"
    tiers = list(plan.objectives) or sorted({t for c in rows for t in c.slo_attainment})
    table = Table(
        Column("fleet", no_wrap=True), Column("policy", no_wrap=True), "profit", "$/h", "$/1M",
        Column("SLO met %", no_wrap=True), "tok/s/GPU",
        title=f"{title}\n(profit: over the simulated demand; SLO met: {' / '.join(tiers)})",
        show_edge=False,
    )  # fmt: skip
    for c in rows[:TOP_ROWS]:
        table.add_row(
            f"{c.gpu} x{c.gpus} TP{c.tensor_parallel}",
            c.policy,
            f"{c.profit_usd:,.2f}",
            f"{c.profit_per_hour:,.2f}",
            _num(c.cost_per_million_tokens, ",.3f"),
            "/".join(_num(_pct(c.slo_attainment.get(t)), ".4g") for t in tiers),
            f"{c.tokens_per_s_per_gpu:,.0f}",
        )
    out.print(table)
    if len(rows) > TOP_ROWS:
        out.print(f"({len(rows) - TOP_ROWS} more in --json)")
    for line in plan.skipped:
        out.print(f"skipped {line}", style="dim")
    out.print(reason(plan))


def write_plan(folder: Path, plan: Plan) -> list[Path]:
    """Write plan.json and plan.png (the best candidates, then the closest misses)."""
    folder.mkdir(parents=True, exist_ok=True)
    data = folder / "plan.json"
    data.write_text(json.dumps(plan_json(plan), indent=2) + "\n")
    chart = charts.candidates(plan.candidates[:TOP_ROWS], plan.misses[:TOP_MISSES])
    return [data, charts.save(chart, folder / "plan.png")]


def _pct(share: float | None) -> float | None:
    return None if share is None else round(100 * share, 1)


def _num(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)
