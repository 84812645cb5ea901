"""Tokens per second over a simulated run, per tier, rebuilt from how each request ended.

The simulator keeps no per-step log, so a served request's output tokens are spread
evenly from its first token to its end, and its input tokens are counted when its first
token came out (the prefill is done by then). Binned this way the totals are exact: the
rates times the bin width sum to the tokens of the summary.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tokenfactory.sim.fleet import OK, Outcome
from tokenfactory.sim.report import TIERS

BINS = 60


@dataclass(frozen=True, slots=True)
class Timeline:
    """Bin edges in seconds and, per tier served, input and output tokens/s in each bin."""

    edges: np.ndarray
    input_per_s: dict[str, np.ndarray]
    output_per_s: dict[str, np.ndarray]


def timeline(outcomes: Sequence[Outcome], bins: int = BINS) -> Timeline:
    """Input and output tokens/s per tier in `bins` equal slices of the run."""
    end = max((o.end_s for o in outcomes), default=0.0) or 1e-9  # as summarize's duration
    edges = np.linspace(0.0, end, bins + 1)
    width = edges[1] - edges[0]
    served = [o for o in outcomes if o.status == OK and o.first_token_s is not None]
    inputs: dict[str, np.ndarray] = {}
    outputs: dict[str, np.ndarray] = {}
    for tier in TIERS:
        mine = [o for o in served if o.req.tier == tier]
        if not mine:
            continue
        first = np.array([o.first_token_s for o in mine], dtype=float)
        last = np.array([o.end_s for o in mine])
        out = np.array([o.output_tokens for o in mine], dtype=float)
        inp = np.array([o.req.input_tokens for o in mine], dtype=float)
        inputs[tier] = np.histogram(first, edges, weights=inp)[0] / width
        outputs[tier] = _spread(first, last, out, edges) / width
    return Timeline(edges, inputs, outputs)


def _spread(
    start: np.ndarray, stop: np.ndarray, tokens: np.ndarray, edges: np.ndarray
) -> np.ndarray:
    """Tokens per bin when each request's tokens fall evenly over [start, stop]."""
    span = stop - start
    timed = span > 0
    lo = np.maximum(start[timed, None], edges[None, :-1])
    hi = np.minimum(stop[timed, None], edges[None, 1:])
    share = np.clip(hi - lo, 0.0, None) / span[timed, None]
    spread: np.ndarray = (tokens[timed, None] * share).sum(axis=0)
    # A request whose tokens all came out at one instant lands in that instant's bin.
    spread += np.histogram(start[~timed], edges, weights=tokens[~timed])[0]
    return spread
