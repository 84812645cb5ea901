from __future__ import annotations

import numpy as np
import pytest
from standin import drive

from tokenfactory.errors import BadInput
from tokenfactory.workload import (
    AgentLoops,
    ChatSessions,
    ClosedLoop,
    Composite,
    Fixed,
    Ids,
    LogNormal,
    TierMix,
    Uniform,
    Workload,
    poisson,
)


def parts(ids: Ids, rng: np.random.Generator) -> list[Workload]:
    mix = TierMix()
    return [
        poisson(20.0, 300, LogNormal(300, 2000), Fixed(100), mix, rng, ids),
        ClosedLoop(4, 50, Fixed(50), Fixed(50), mix, rng, ids),
        ChatSessions(40, 1.0, Uniform(1, 6), Fixed(3.0), 100, Fixed(20), Fixed(80), mix, rng, ids),
        AgentLoops(
            10, None, Fixed(15), 500, 200, Fixed(100), Fixed(60), Fixed(800), 0.2, mix, rng, ids
        ),
    ]


def test_ids_unique_and_every_part_runs_to_completion() -> None:
    w = Composite(parts(Ids(), np.random.default_rng(0)))
    first = w.initial()
    assert [r.arrival_s for r in first] == sorted(r.arrival_s for r in first)
    served = drive(w, service_s=lambda r: 0.2)
    ids = [r.id for r in served.requests]
    assert len(ids) == len(set(ids))
    kinds = [r.kind for r in served.requests]
    assert kinds.count("agent") == 10 * 15
    assert sum(r.kind == "request" for r in served.requests) == 300 + 50
    sessions = [r.session for r in served.requests if r.session is not None]
    assert len(set(sessions)) == 40 + 10  # chat and agent sessions do not collide


def test_follow_up_goes_to_the_issuing_part() -> None:
    w = Composite(parts(Ids(), np.random.default_rng(1)))
    first = w.initial()
    agent = next(r for r in first if r.kind == "agent")
    nxt = w.follow_up(agent, 5.0, True)
    assert nxt is not None and nxt.kind == "agent" and nxt.session == agent.session
    assert nxt.arrival_s == 5.0
    batch = next(r for r in first if r.kind == "request" and r.arrival_s > 0)
    assert w.follow_up(batch, 6.0, True) is None  # open loop: nothing follows


def test_initial_twice_gives_the_same_requests() -> None:
    w = Composite(parts(Ids(), np.random.default_rng(2)))
    assert w.initial() == w.initial()


def test_parts_with_separate_id_counters_are_refused() -> None:
    rng = np.random.default_rng(3)
    a = poisson(1.0, 5, Fixed(1), Fixed(1), TierMix(), rng, Ids())
    b = poisson(1.0, 5, Fixed(1), Fixed(1), TierMix(), rng, Ids())
    with pytest.raises(BadInput, match="shared Ids"):
        Composite([a, b]).initial()
