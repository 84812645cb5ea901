from __future__ import annotations

import itertools
from collections import defaultdict

import numpy as np
import pytest
from standin import Served, drive

from tokenfactory.errors import BadInput
from tokenfactory.workload import (
    ChatSessions,
    Exponential,
    Fixed,
    Ids,
    Length,
    LogNormal,
    Request,
    TierMix,
    Uniform,
)

MIX = TierMix([("realtime", 0.5), ("standard", 0.5)])


def chat(
    sessions: int = 200,
    rate: float | None = 2.0,
    turns: Length | None = None,
    think_s: Length | None = None,
    seed: int = 0,
    ids: Ids | None = None,
) -> ChatSessions:
    return ChatSessions(
        sessions,
        rate,
        turns or Uniform(1, 8),
        think_s or Exponential(5.0, 60.0, min=0),
        100,
        LogNormal(40, 400),
        LogNormal(250, 2000),
        MIX,
        np.random.default_rng(seed),
        ids or Ids(),
    )


def by_session(served: Served) -> dict[int, list[Request]]:
    out: dict[int, list[Request]] = defaultdict(list)
    for r in served.requests:
        assert r.session is not None
        out[r.session].append(r)
    return out


def test_prompt_grows_by_previous_output_and_a_user_message() -> None:
    served = drive(chat(), service_s=lambda r: 0.5)
    for turns in by_session(served).values():
        first = turns[0]
        assert first.prefix_tokens == 0 and first.input_tokens > 100  # system + user message
        for prev, cur in itertools.pairwise(turns):
            assert cur.prefix_tokens == prev.input_tokens + prev.output_tokens
            user_message = cur.input_tokens - cur.prefix_tokens
            assert 1 <= user_message <= 400


def test_user_messages_and_outputs_follow_their_distributions() -> None:
    served = drive(chat(sessions=3000, turns=Fixed(6)))
    later = [r for r in served.requests if r.prefix_tokens > 0]
    user = np.array([r.input_tokens - r.prefix_tokens for r in later])
    out = np.array([r.output_tokens for r in served.requests])
    assert user.mean() == pytest.approx(40, rel=0.05)
    assert out.mean() == pytest.approx(250, rel=0.05)


def test_think_time_separates_turns() -> None:
    served = drive(chat(sessions=2000, turns=Fixed(5)), service_s=lambda r: 2.0)
    gaps = []
    for turns in by_session(served).values():
        assert len(turns) == 5
        for prev, cur in itertools.pairwise(turns):
            gap = cur.arrival_s - served.finished[prev.id]
            assert 0 <= gap <= 60
            gaps.append(gap)
    assert np.mean(gaps) == pytest.approx(5.0, rel=0.05)


def test_fixed_think_time_is_exact() -> None:
    served = drive(chat(turns=Fixed(3), think_s=Fixed(7)), service_s=lambda r: 1.5)
    for turns in by_session(served).values():
        for prev, cur in itertools.pairwise(turns):
            assert cur.arrival_s == pytest.approx(served.finished[prev.id] + 7)


def test_failed_turn_ends_the_session() -> None:
    w = chat(turns=Fixed(10))
    served = drive(w, ok=lambda r: r.prefix_tokens == 0 or r.session != 3)
    sessions = by_session(served)
    assert len(sessions[3]) == 2  # the second turn failed: no third
    assert all(len(t) == 10 for s, t in sessions.items() if s != 3)
    assert w.live == 0


def test_one_tier_and_kind_per_session() -> None:
    served = drive(chat(sessions=400))
    sessions = by_session(served)
    assert len(sessions) == 400
    assert all(len({r.tier for r in t}) == 1 for t in sessions.values())
    assert all(r.kind == "chat" for r in served.requests)
    tiers = [t[0].tier for t in sessions.values()]
    assert tiers.count("realtime") / len(tiers) == pytest.approx(0.5, abs=0.1)


def test_sessions_start_as_poisson_or_all_at_zero() -> None:
    starts = [r.arrival_s for r in chat(sessions=20_000, rate=4.0).initial()]
    assert starts == sorted(starts)
    assert len(starts) / starts[-1] == pytest.approx(4.0, rel=0.03)
    assert all(r.arrival_s == 0 for r in chat(rate=None).initial())


def test_same_seed_same_sessions() -> None:
    a = drive(chat(seed=1)).requests
    assert a == drive(chat(seed=1)).requests
    assert a != drive(chat(seed=2)).requests


def test_follow_up_of_a_stale_or_foreign_request_is_none() -> None:
    w = chat(turns=Fixed(3))
    first = w.initial()[0]
    nxt = w.follow_up(first, 1.0, True)
    assert nxt is not None
    assert w.follow_up(first, 2.0, True) is None  # already followed up
    assert w.follow_up(Request(10**9, 0.0, 5, 5), 2.0, True) is None


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(BadInput, match="turns"):
        chat(turns=Uniform(0, 3))
    with pytest.raises(BadInput, match="rate"):
        chat(rate=-1.0)
