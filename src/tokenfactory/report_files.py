"""`simulate --out DIR` and `plan --out DIR`: the JSON, PNG charts and report.html.

Files are written into a staging folder inside DIR and moved into place only once all of
them are written, so a failure leaves DIR as it was. An --out that cannot be a folder is
refused before any simulation runs.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from tokenfactory import render_charts as charts
from tokenfactory import render_plan
from tokenfactory.catalog import Catalog
from tokenfactory.errors import BadInput, ConfigError
from tokenfactory.report_html import Chart, plan_page, simulation_page
from tokenfactory.sched import TierRule
from tokenfactory.sim.build import build
from tokenfactory.sim.fleet import Outcome
from tokenfactory.sim.frontier import Frontier, default_concurrency, sweep
from tokenfactory.sim.plan import Candidate, Demand, Plan, fleet_scenario
from tokenfactory.sim.run import Setup, simulate
from tokenfactory.sim.tier_pnl import with_tier_costs
from tokenfactory.sim.timeline import timeline

SUMMARY, REPORT = "summary.json", "report.html"
LATENCY = Chart("latency.png", "TTFT, TPOT and E2E p50 / p90 / p99 per tier (dashed: objective)")
THROUGHPUT = Chart("throughput.png", "Output and input tokens/s over the run, by tier")
PNL = Chart("pnl.png", "Revenue, attributed cost and profit per tier, and the idle cost")
RANKING = Chart("plan.png", "Profit per hour of the candidate fleets, then the closest misses")
FRONTIER = Chart("frontier.png", "The best fleet's frontier: tokens/s per GPU against per user")


def check_out(folder: Path) -> None:
    """Refuse, before any work, an --out that is a file, lies under one, or is read-only."""
    if folder.exists() and not folder.is_dir():
        raise BadInput(f"--out {folder} is a file, not a folder", param="--out")
    base = folder
    while not base.exists():
        base = base.parent
    if not base.is_dir():
        raise BadInput(f"--out {folder}: {base} is a file, not a folder", param="--out")
    if not os.access(base, os.W_OK | os.X_OK):
        raise BadInput(f"--out {folder}: {base} is not writable", param="--out")


def publish(folder: Path, write: Callable[[Path], list[Path]]) -> list[Path]:
    """Run `write` into a staging folder, then move what it wrote into `folder`: all or none."""
    check_out(folder)
    made = [p for p in (folder, *folder.parents) if not p.exists()]  # deepest first
    done = False
    try:
        folder.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(prefix=".staging-", dir=folder))
        try:
            written = write(stage)
            targets = [folder / p.name for p in written]
            for t in targets:
                if t.exists() and not t.is_file():
                    raise BadInput(f"--out {folder}: {t.name} is not a file", param="--out")
            for src, dst in zip(written, targets, strict=True):
                src.replace(dst)
            done = True
            return targets
        finally:
            shutil.rmtree(stage, ignore_errors=True)
    except OSError as e:
        why = e.strerror or e
        raise BadInput(f"--out {folder}: cannot write ({why})", param="--out") from None
    finally:
        if not done:
            for path in made:  # only the folders this call made, and only if still empty
                try:
                    path.rmdir()
                except OSError:
                    break


def write_simulation(
    folder: Path, summary: Mapping[str, Any], outcomes: Sequence[Outcome], setup: Setup, title: str
) -> list[Path]:
    """`simulate --out`: summary.json, latency.png, throughput.png, pnl.png, report.html."""
    return publish(folder, partial(simulation_files, summary, outcomes, setup.tiers, title))


def write_plan(
    folder: Path, demand: Demand, catalog: Catalog, plan: Plan, title: str
) -> list[Path]:
    """`plan --out`: the plan, the best fleet's summary, frontier and P&L, report.html."""
    best = best_fleet(demand, catalog, plan)
    return publish(folder, partial(plan_files, plan, best, title))


def simulation_files(
    summary: Mapping[str, Any],
    outcomes: Sequence[Outcome],
    tiers: Mapping[str, TierRule],
    title: str,
    stage: Path,
) -> list[Path]:
    """summary.json, latency.png, throughput.png, pnl.png and report.html into `stage`."""
    data = _json(stage / SUMMARY, summary)
    figures = [
        (charts.latency(summary, tiers), LATENCY),
        (charts.throughput(timeline(outcomes)), THROUGHPUT),
        (charts.pnl(summary), PNL),
    ]
    pngs = [charts.save(fig, stage / chart.file) for fig, chart in figures]
    page = stage / REPORT
    page.write_text(simulation_page(title, summary, [c for _, c in figures]))
    return [data, *pngs, page]


@dataclass(frozen=True, slots=True)
class BestFleet:
    """The plan's best candidate simulated again for its report, and its frontier."""

    candidate: Candidate
    summary: dict[str, Any]  # simulate's summary, tier costs included
    frontier: Frontier | None
    frontier_title: str
    note: str | None = None  # why there is no frontier


def best_fleet(demand: Demand, catalog: Catalog, plan: Plan) -> BestFleet | None:
    """Simulate the best candidate (same seed: the same run the search made) and sweep it."""
    if not plan.candidates:
        return None
    best = plan.candidates[0]
    loaded = fleet_scenario(demand, best.gpu, best.gpus, best.tensor_parallel)
    setup, _ = build(loaded, catalog, best.policy)
    result = simulate(setup)
    summary = with_tier_costs(result.summary, result.fleet.outcomes, setup.replicas)
    title = render_plan.frontier_title(loaded.scenario)
    try:
        frontier = sweep(loaded, setup, default_concurrency(setup))
    except ConfigError as e:  # e.g. sessions or agents only: no lengths for the clients
        return BestFleet(best, summary, None, title, f"No frontier for the best fleet: {e.message}")
    return BestFleet(best, summary, frontier, title)


def plan_files(plan: Plan, best: BestFleet | None, title: str, stage: Path) -> list[Path]:
    """plan.json and plan.png; the best fleet's summary.json, frontier and pnl.png; the page."""
    written = render_plan.write_plan(stage, plan)
    data = render_plan.plan_json(plan)
    shown = data["candidates"][: render_plan.TOP_ROWS] + data["misses"][: render_plan.TOP_MISSES]
    figures: list[Chart] = []
    notes: list[str] = []
    if best is not None:
        written.append(_json(stage / SUMMARY, best.summary))
        if best.frontier is not None:
            written += render_plan.write_frontier(stage, best.frontier, best.frontier_title)
            figures.append(FRONTIER)
        elif best.note is not None:
            notes.append(best.note)
        written.append(charts.save(charts.pnl(best.summary), stage / PNL.file))
        figures.append(PNL)
    page = stage / REPORT
    summary = None if best is None else best.summary
    page.write_text(plan_page(title, data, shown, RANKING, summary, figures, notes))
    return [*written, page]


def _json(path: Path, data: Mapping[str, Any]) -> Path:
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path
