from __future__ import annotations

import itertools
from collections import defaultdict

import numpy as np
import pytest
from standin import Served, drive

from tokenfactory.errors import BadInput
from tokenfactory.workload import AgentLoops, Fixed, Ids, Length, LogNormal, Request, TierMix


def agents(
    n: int = 100,
    steps: Length | None = None,
    tool: Length | None = None,
    share: float = 0.3,
    seed: int = 0,
) -> AgentLoops:
    return AgentLoops(
        n,
        None,
        steps or Fixed(20),
        2000,
        LogNormal(400, 4000),
        tool or LogNormal(300, 4000),
        Fixed(60),
        Fixed(800),
        share,
        TierMix(),
        np.random.default_rng(seed),
        Ids(),
    )


def by_agent(served: Served) -> dict[int, list[Request]]:
    out: dict[int, list[Request]] = defaultdict(list)
    for r in served.requests:
        assert r.session is not None
        out[r.session].append(r)
    return out


def test_next_step_arrives_the_moment_the_last_one_ends() -> None:
    served = drive(agents(), service_s=lambda r: r.output_tokens / 50)
    for steps in by_agent(served).values():
        assert len(steps) == 20
        for prev, cur in itertools.pairwise(steps):
            assert cur.arrival_s == served.finished[prev.id]


def test_each_prompt_is_previous_prompt_output_and_tool_result() -> None:
    served = drive(agents(tool=Fixed(123)))
    for steps in by_agent(served).values():
        assert steps[0].prefix_tokens == 0 and steps[0].input_tokens >= 2001
        for prev, cur in itertools.pairwise(steps):
            assert cur.prefix_tokens == prev.input_tokens + prev.output_tokens
            assert cur.input_tokens == cur.prefix_tokens + 123
    assert all(r.kind == "agent" for r in served.requests)


def test_tool_results_follow_their_distribution() -> None:
    served = drive(agents(n=2000))
    tool = np.array([r.input_tokens - r.prefix_tokens for r in served.requests if r.prefix_tokens])
    assert tool.max() <= 4000
    assert tool.mean() == pytest.approx(300, rel=0.05)


def test_reasoning_share_is_respected() -> None:
    served = drive(agents(n=1000, share=0.3))
    outs = [r.output_tokens for r in served.requests]
    assert set(outs) == {60, 800}
    assert outs.count(800) / len(outs) == pytest.approx(0.3, abs=0.01)


def test_failed_step_ends_the_agent() -> None:
    w = agents(n=10)
    served = drive(w, ok=lambda r: not (r.session == 4 and r.prefix_tokens > 0))
    loops = by_agent(served)
    assert len(loops[4]) == 2
    assert all(len(s) == 20 for a, s in loops.items() if a != 4)
    assert w.live == 0


def test_same_seed_same_steps() -> None:
    a = drive(agents(seed=5)).requests
    assert a == drive(agents(seed=5)).requests
    assert a != drive(agents(seed=6)).requests


@pytest.mark.parametrize("share", [-0.1, 1.5, float("nan")])
def test_reasoning_share_outside_zero_one_is_refused(share: float) -> None:
    with pytest.raises(BadInput, match="reasoning_share"):
        agents(share=share)
