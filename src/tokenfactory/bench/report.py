"""A run's summary: per-tier latency percentiles, SLO attainment, goodput, throughput.

The definitions are the simulator's (sim/report.py), so predicted and measured compare
like for like: TTFT from sending to the first token, TPOT as (end - first token) / (output
tokens - 1), a request meets its tier's objective when it completed within the TTFT,
TPOT and completion-window targets, and goodput counts the output tokens of those that
did, over the run's length (the last end). Requests cut off by --duration are left out.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tokenfactory.bench.sample import OK, RATE_LIMITED, STATUSES, UNFINISHED, Sample
from tokenfactory.workload import TIERS

ERRORS_KEPT = 10  # distinct error messages in a summary


@dataclass(frozen=True, slots=True)
class Objective:
    """A tier's service objective; None means no target."""

    ttft_s: float | None = None
    tpot_s: float | None = None
    window_s: float | None = None


def stats(values: Sequence[float]) -> dict[str, float]:
    """Mean and 50th, 90th, 99th percentiles (numpy's linear interpolation), 0 when empty."""
    if not values:
        return {"mean": 0.0, "p50": 0.0, "p90": 0.0, "p99": 0.0}
    a = np.asarray(values, dtype=np.float64)
    p50, p90, p99 = np.percentile(a, [50, 90, 99])
    return {"mean": float(a.mean()), "p50": float(p50), "p90": float(p90), "p99": float(p99)}


def met(s: Sample, objective: Objective) -> bool:
    """Whether a request completed within its tier's objective."""
    if not s.ok:
        return False
    ttft, tpot, e2e = s.ttft_s, s.tpot_s, s.e2e_s
    assert ttft is not None and tpot is not None and e2e is not None  # set on every ok sample
    if objective.ttft_s is not None and ttft > objective.ttft_s:
        return False
    if objective.tpot_s is not None and tpot > objective.tpot_s:
        return False
    return objective.window_s is None or e2e <= objective.window_s


def _ms(values: list[float | None]) -> dict[str, float]:
    return stats([v * 1000 for v in values if v is not None])


def _latency(done: list[Sample]) -> dict[str, dict[str, float]]:
    return {
        "ttft_ms": _ms([s.ttft_s for s in done]),
        "tpot_ms": _ms([s.tpot_s for s in done]),
        "e2e_ms": _ms([s.e2e_s for s in done]),
        "itl_ms": _ms([g for s in done for g in s.gaps_s]),
    }


def summarize(samples: Sequence[Sample], objectives: Mapping[str, Objective]) -> dict[str, Any]:
    """The JSON summary of a run (the keys the simulator's summary has, and more)."""
    offered = [s for s in samples if s.status != UNFINISHED]
    done = [s for s in offered if s.ok]
    ends = [s.end_s for s in offered if s.end_s is not None]
    duration = max(ends, default=0.0) or 1e-9
    per_tier: dict[str, dict[str, Any]] = {}
    good_tokens = 0
    for tier in TIERS:
        mine = [s for s in offered if s.tier == tier]
        if not mine:
            continue
        ok = [s for s in mine if s.ok]
        good = [s for s in ok if met(s, objectives.get(tier, Objective()))]
        good_tokens += sum(s.completion_tokens for s in good)
        per_tier[tier] = {
            "requests": len(mine),
            "requests_completed": len(ok),
            "refused": sum(s.status == RATE_LIMITED for s in mine),
            "errors": sum(s.status not in (OK, RATE_LIMITED) for s in mine),
            **_latency(ok),
            "slo_attainment": len(good) / len(mine),
            "goodput_tokens_per_s": sum(s.completion_tokens for s in good) / duration,
        }
    output = sum(s.completion_tokens for s in done)
    prompt = sum(s.prompt_tokens for s in done)
    by_status = Counter(s.status for s in samples)
    errors = Counter(s.error for s in offered if s.error)
    return {
        "requests": len(offered),
        "requests_completed": len(done),
        "by_status": {status: by_status.get(status, 0) for status in STATUSES},
        "duration_s": duration,
        "output_tokens_per_s": output / duration,
        "input_tokens_per_s": prompt / duration,
        "requests_per_s": len(done) / duration,
        **_latency(done),
        "goodput_tokens_per_s": good_tokens / duration,
        "per_tier": per_tier,
        "tokens": {
            "input": prompt,
            "output": output,
            "mean_input": prompt / len(done) if done else 0.0,
            "mean_output": output / len(done) if done else 0.0,
            "from_usage": sum(s.tokens_from == "usage" for s in done),
            "counted": sum(s.tokens_from == "counted" for s in done),
        },
        "error_messages": [
            {"message": message, "count": n} for message, n in errors.most_common(ERRORS_KEPT)
        ],
    }


def failed(summary: Mapping[str, Any]) -> bool:
    """Whether a run should exit non-zero: a request errored, or none completed."""
    by_status = summary["by_status"]
    errored = sum(
        int(n) for status, n in by_status.items() if status not in (OK, RATE_LIMITED, UNFINISHED)
    )
    return errored > 0 or not summary["requests_completed"]
