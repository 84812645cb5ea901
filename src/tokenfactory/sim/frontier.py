"""Throughput against interactivity: sweep closed-loop clients over one scenario's fleet.

Each point replaces the scenario's workload by `concurrency` clients that send their next
request as soon as the last one ends (InferenceMAX's benchmark shape), with the scenario's
input and output lengths, tier mix, hardware and policy. More clients fill the batch: the
fleet makes more tokens per GPU while each user sees fewer tokens per second.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tokenfactory.config import LoadedScenario
from tokenfactory.errors import BadInput
from tokenfactory.sim.run import Setup, simulate
from tokenfactory.workload import ClosedLoop, Ids, TierMix, parse_length

DEFAULT_TOP = 8192  # the default sweep stops here: seconds, about 65k requests at the top
MAX_CONCURRENCY = 65536  # the most clients --concurrency accepts
MIN_REQUESTS = 200  # each point simulates max(8 x concurrency, MIN_REQUESTS) requests
_SAME = 1e-9  # relative difference below which two rates are equal (float noise)


@dataclass(frozen=True, slots=True)
class Point:
    """One concurrency level and what the fleet did under it."""

    concurrency: int
    requests: int
    requests_completed: int
    tokens_per_s_per_gpu: float
    tokens_per_s_per_user: float | None  # 1000 / mean TPOT in ms; None without decode
    ttft_p50_ms: float
    ttft_p99_ms: float
    tpot_mean_ms: float
    cost_per_million_tokens: float | None
    tokens_per_mw: float


@dataclass(frozen=True, slots=True)
class Frontier:
    """The swept points and the indices of the Pareto-optimal ones."""

    points: list[Point]
    pareto: list[int]

    def to_json(self) -> dict[str, Any]:
        """`{"points": [...], "pareto": [indices]}`."""
        return {"points": [dataclasses.asdict(p) for p in self.points], "pareto": self.pareto}


def default_concurrency(setup: Setup) -> list[int]:
    """Powers of two from 1 to twice the fleet's batch slots, at most DEFAULT_TOP."""
    top = min(2 * setup.limits.max_num_seqs * setup.replicas, DEFAULT_TOP)
    levels = [1]
    while levels[-1] * 2 <= top:
        levels.append(levels[-1] * 2)
    return levels


def parse_concurrency(text: str) -> list[int]:
    """`"1,2,4"` -> [1, 2, 4]; each level a positive integer, no more than MAX_CONCURRENCY."""
    levels: list[int] = []
    for piece in text.split(","):
        try:
            level = int(piece.strip())
        except ValueError:
            raise BadInput(f"--concurrency: {piece.strip()!r} is not an integer") from None
        if not 1 <= level <= MAX_CONCURRENCY:
            raise BadInput(f"--concurrency: {level} is not between 1 and {MAX_CONCURRENCY}")
        levels.append(level)
    return sorted(set(levels))


def sweep(loaded: LoadedScenario, setup: Setup, concurrency: Sequence[int]) -> Frontier:
    """Simulate each concurrency level on `setup`'s fleet; mark the Pareto-optimal points."""
    w = loaded.scenario.workload
    if w.input_tokens is None or w.output_tokens is None:
        raise loaded.error(
            "workload", "input_tokens", "frontier needs input_tokens and output_tokens"
        )
    inputs = parse_length(w.input_tokens, loaded.where("workload", "input_tokens"))
    outputs = parse_length(w.output_tokens, loaded.where("workload", "output_tokens"))
    mix = TierMix(tuple(w.tier_shares().items()))
    points = []
    for c in concurrency:
        rng = np.random.default_rng(w.seed)
        clients = ClosedLoop(c, max(8 * c, MIN_REQUESTS), inputs, outputs, mix, rng, Ids())
        points.append(_point(c, simulate(dataclasses.replace(setup, workload=clients)).summary))
    xy = [(p.tokens_per_s_per_user, p.tokens_per_s_per_gpu) for p in points]
    return Frontier(points, pareto(xy))


def _point(c: int, s: dict[str, Any]) -> Point:
    tpot = s["tpot_ms"]["mean"]
    return Point(
        concurrency=c,
        requests=s["requests"],
        requests_completed=s["requests_completed"],
        tokens_per_s_per_gpu=s["output_tokens_per_s_per_gpu"],
        tokens_per_s_per_user=1000 / tpot if tpot > 0 else None,
        ttft_p50_ms=s["ttft_ms"]["p50"],
        ttft_p99_ms=s["ttft_ms"]["p99"],
        tpot_mean_ms=tpot,
        cost_per_million_tokens=s["cost_per_million_tokens"],
        tokens_per_mw=s["tokens_per_mw"],
    )


def pareto(points: Sequence[tuple[float | None, float]]) -> list[int]:
    """Indices of (x, y) points no other point beats: >= on both and > on one (None: out)."""
    known = [(i, x, y) for i, (x, y) in enumerate(points) if x is not None]
    return [
        i
        for i, x, y in known
        if not any(_ge(x2, x) and _ge(y2, y) and (_gt(x2, x) or _gt(y2, y)) for _, x2, y2 in known)
    ]


def _ge(a: float, b: float) -> bool:
    return a >= b or math.isclose(a, b, rel_tol=_SAME)


def _gt(a: float, b: float) -> bool:
    return a > b and not math.isclose(a, b, rel_tol=_SAME)
