"""Tokens/s over time: output spread from first token to end, input at the first token."""

from __future__ import annotations

import numpy as np
import pytest

from tokenfactory.sim.fleet import Outcome
from tokenfactory.sim.timeline import timeline
from tokenfactory.workload import Request


def served(i: int, tier: str, first: float, end: float, inp: int, out: int) -> Outcome:
    return Outcome(Request(i, 0.0, inp, out, tier), "ok", 0, end, first, 0, out)


OUTCOMES = [
    served(0, "standard", 2.0, 6.0, 100, 40),  # 10 tokens/s from 2 s to 6 s
    served(1, "realtime", 9.5, 10.0, 50, 4),  # half a second: 4 tokens in the last bin
    served(2, "realtime", 3.25, 3.25, 20, 1),  # one token at one instant
    Outcome(Request(3, 0.0, 300, 30, "flex"), "abandoned", 0, 7.0),  # nothing served
]


def test_tokens_fall_in_the_seconds_they_came_out() -> None:
    line = timeline(OUTCOMES, bins=10)
    assert np.allclose(line.edges, np.arange(11.0))  # one-second bins up to the last end
    assert set(line.output_per_s) == set(line.input_per_s) == {"realtime", "standard"}
    std = [0, 0, 10, 10, 10, 10, 0, 0, 0, 0]
    assert np.allclose(line.output_per_s["standard"], std)
    assert np.allclose(line.output_per_s["realtime"], [0, 0, 0, 1, 0, 0, 0, 0, 0, 4])
    assert np.allclose(line.input_per_s["standard"], [0, 0, 100, 0, 0, 0, 0, 0, 0, 0])
    assert np.allclose(line.input_per_s["realtime"], [0, 0, 0, 20, 0, 0, 0, 0, 0, 50])


@pytest.mark.parametrize("bins", [1, 7, 60])
def test_rates_times_the_bin_width_add_up_to_the_tokens(bins: int) -> None:
    line = timeline(OUTCOMES, bins=bins)
    width = line.edges[1] - line.edges[0]
    out = sum(r.sum() for r in line.output_per_s.values()) * width
    inp = sum(r.sum() for r in line.input_per_s.values()) * width
    assert out == pytest.approx(40 + 4 + 1) and inp == pytest.approx(100 + 50 + 20)


def test_no_outcomes_no_tiers() -> None:
    line = timeline([], bins=5)
    assert line.output_per_s == {} and len(line.edges) == 6
