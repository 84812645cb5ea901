"""A run's folder: requests.csv (one row per request), summary.json, latency.png.

Charts use matplotlib's object API (a Figure with the Agg canvas), never pyplot's state.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tokenfactory.bench.sample import Sample
from tokenfactory.errors import BadInput
from tokenfactory.workload import TIERS

COLUMNS = (
    "id",
    "kind",
    "tier",
    "served_tier",
    "session",
    "status",
    "http_status",
    "arrival_s",
    "start_s",
    "ttft_ms",
    "tpot_ms",
    "e2e_ms",
    "itl_mean_ms",
    "itl_max_ms",
    "prompt_tokens",
    "completion_tokens",
    "planned_input_tokens",
    "planned_output_tokens",
    "tokens_from",
    "error",
)
SUMMARY = "summary.json"


def _ms(seconds: float | None) -> str:
    return "" if seconds is None else f"{seconds * 1000:.3f}"


def _row(s: Sample) -> list[object]:
    gaps = s.gaps_s
    return [
        s.id,
        s.kind,
        s.tier,
        s.served_tier or "",
        "" if s.session is None else s.session,
        s.status,
        s.http_status or "",
        f"{s.arrival_s:.6f}",
        f"{s.start_s:.6f}",
        _ms(s.ttft_s),
        _ms(s.tpot_s),
        _ms(s.e2e_s),
        _ms(sum(gaps) / len(gaps) if gaps else None),
        _ms(max(gaps) if gaps else None),
        s.prompt_tokens,
        s.completion_tokens,
        s.planned_input_tokens,
        s.planned_output_tokens,
        s.tokens_from,
        s.error,
    ]


def write_run(folder: Path, samples: Sequence[Sample], summary: dict[str, Any]) -> list[Path]:
    """Write the run's three files into `folder` (made if missing); their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    table, data, chart = folder / "requests.csv", folder / SUMMARY, folder / "latency.png"
    with table.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(COLUMNS)
        writer.writerows(_row(s) for s in sorted(samples, key=lambda s: s.start_s))
    data.write_text(json.dumps(summary, indent=2) + "\n")
    _chart(chart, samples)
    return [table, data, chart]


def read_summary(folder: Path) -> dict[str, Any]:
    """The summary.json of a run folder, or BadInput saying what is missing."""
    path = folder / SUMMARY
    try:
        data = json.loads(path.read_text())
    except OSError as e:
        raise BadInput(f"{path}: cannot read the run's summary ({e.strerror})") from None
    except json.JSONDecodeError as e:
        raise BadInput(f"{path}: not JSON ({e})") from None
    if not isinstance(data, dict):
        raise BadInput(f"{path}: not a bench summary")
    return data


def _chart(path: Path, samples: Sequence[Sample]) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4.5), layout="constrained")
    FigureCanvasAgg(fig)
    over_time, per_tier = fig.subplots(1, 2, width_ratios=(3, 2))
    tiers = [t for t in TIERS if any(s.tier == t and s.ok for s in samples)]
    colors = dict(zip(TIERS, ("tab:red", "tab:blue", "tab:green", "tab:gray"), strict=True))
    for tier in tiers:
        done = [s for s in samples if s.tier == tier and s.ok]
        starts = [s.start_s for s in done]
        over_time.scatter(
            starts,
            [(s.ttft_s or 0) * 1000 for s in done],
            s=8,
            color=colors[tier],
            label=f"{tier} TTFT",
        )
        over_time.scatter(
            starts,
            [(s.e2e_s or 0) * 1000 for s in done],
            s=8,
            marker="x",
            alpha=0.5,
            color=colors[tier],
            label=f"{tier} end to end",
        )
    failed = [s for s in samples if not s.ok and s.end_s is not None]
    if failed:
        over_time.scatter(
            [s.start_s for s in failed],
            [(s.e2e_s or 0) * 1000 for s in failed],
            s=14,
            marker="v",
            color="black",
            label="refused or failed",
        )
    over_time.set_yscale("log")
    over_time.set_xlabel("time since start (s)")
    over_time.set_ylabel("latency (ms)")
    over_time.set_title("latency over time", fontsize=10)
    over_time.grid(alpha=0.3)
    if tiers or failed:
        over_time.legend(fontsize=7, loc="upper left")
    figures = (("TTFT", "ttft_s"), ("TPOT", "tpot_s"), ("E2E", "e2e_s"))
    width = 0.8 / max(len(tiers), 1)
    for i, tier in enumerate(tiers):
        done = [s for s in samples if s.tier == tier and s.ok]
        for j, (_, attr) in enumerate(figures):
            values = sorted(getattr(s, attr) * 1000 for s in done)
            p50, p99 = (
                values[len(values) // 2],
                values[min(len(values) - 1, int(len(values) * 0.99))],
            )
            x = j + i * width
            per_tier.bar(x, p50, width, color=colors[tier], label=tier if j == 0 else None)
            per_tier.errorbar(x, p50, yerr=[[0], [p99 - p50]], color="black", capsize=3)
    per_tier.set_xticks([j + 0.4 - width / 2 for j in range(len(figures))])
    per_tier.set_xticklabels([name for name, _ in figures])
    per_tier.set_yscale("log")
    per_tier.set_ylabel("ms (bar p50, whisker p99)")
    per_tier.set_title("per tier", fontsize=10)
    per_tier.grid(alpha=0.3, axis="y")
    if tiers:
        per_tier.legend(fontsize=7)
    fig.savefig(path, dpi=110)
