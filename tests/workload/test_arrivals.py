from __future__ import annotations

import numpy as np
import pytest
from standin import drive

from tokenfactory.errors import BadInput
from tokenfactory.workload import (
    ClosedLoop,
    Fixed,
    Ids,
    LogNormal,
    TierMix,
    Uniform,
    offline,
    poisson,
)

MIX = TierMix([("realtime", 0.25), ("standard", 0.75)])


def test_offline_all_at_zero_with_configured_lengths() -> None:
    w = offline(5000, Fixed(128), Uniform(1, 64), MIX, np.random.default_rng(0), Ids())
    rs = w.initial()
    assert len(rs) == 5000
    assert all(r.arrival_s == 0.0 for r in rs)
    assert all(r.input_tokens == 128 and 1 <= r.output_tokens <= 64 for r in rs)
    assert len({r.id for r in rs}) == 5000
    assert w.follow_up(rs[0], 10.0, True) is None


def test_poisson_recovers_rate_and_is_sorted() -> None:
    rate = 40.0
    w = poisson(rate, 100_000, Fixed(10), Fixed(10), MIX, np.random.default_rng(1), Ids())
    t = np.array([r.arrival_s for r in w.initial()])
    assert np.all(np.diff(t) >= 0) and t[0] > 0
    assert (len(t) / t[-1]) == pytest.approx(rate, rel=0.02)
    # Exponential gaps: the standard deviation equals the mean.
    gaps = np.diff(t)
    assert gaps.std() / gaps.mean() == pytest.approx(1.0, abs=0.03)


def test_lengths_follow_their_distributions() -> None:
    inputs, outputs = LogNormal(500, 4096), LogNormal(200, 1024, cv=0.5)
    w = poisson(10.0, 100_000, inputs, outputs, MIX, np.random.default_rng(2), Ids())
    rs = w.initial()
    ins = np.array([r.input_tokens for r in rs])
    outs = np.array([r.output_tokens for r in rs])
    assert ins.max() <= 4096 and ins.min() >= 1
    assert outs.mean() == pytest.approx(200, rel=0.02)
    assert sum(r.tier == "realtime" for r in rs) / len(rs) == pytest.approx(0.25, abs=0.01)


def test_same_seed_same_requests_different_seed_different() -> None:
    def make(seed: int) -> list[object]:
        rng = np.random.default_rng(seed)
        return list(poisson(5.0, 500, LogNormal(300, 2000), Fixed(50), MIX, rng, Ids()).initial())

    assert make(3) == make(3)
    assert make(3) != make(4)


def test_ids_come_from_the_shared_counter() -> None:
    ids = Ids()
    rng = np.random.default_rng(0)
    a = offline(10, Fixed(1), Fixed(1), MIX, rng, ids).initial()
    b = poisson(1.0, 10, Fixed(1), Fixed(1), MIX, rng, ids).initial()
    assert sorted(r.id for r in a + b) == list(range(20))


def test_closed_loop_keeps_concurrency_and_stops_at_total() -> None:
    w = ClosedLoop(8, 100, Fixed(10), Uniform(1, 100), MIX, np.random.default_rng(5), Ids())
    first = w.initial()
    assert len(first) == 8 and all(r.arrival_s == 0.0 for r in first)
    served = drive(w, service_s=lambda r: r.output_tokens * 0.01)
    assert len(served.requests) == 100 and w.issued == 100
    assert served.max_in_flight == 8
    # Each replacement arrives exactly when some request finished.
    finishes = set(served.finished.values())
    assert all(r.arrival_s in finishes for r in served.requests[8:])


def test_closed_loop_replaces_failed_requests_too() -> None:
    w = ClosedLoop(4, 20, Fixed(10), Fixed(10), MIX, np.random.default_rng(6), Ids())
    served = drive(w, ok=lambda r: False)
    assert len(served.requests) == 20


def test_closed_loop_with_total_below_concurrency() -> None:
    w = ClosedLoop(10, 3, Fixed(10), Fixed(10), MIX, np.random.default_rng(7), Ids())
    first = w.initial()
    assert len(first) == 3
    assert w.follow_up(first[0], 1.0, True) is None


@pytest.mark.parametrize(
    "make",
    [
        lambda rng: poisson(0.0, 10, Fixed(1), Fixed(1), MIX, rng, Ids()),
        lambda rng: poisson(1.0, -1, Fixed(1), Fixed(1), MIX, rng, Ids()),
        lambda rng: offline(10, Fixed(0), Fixed(1), MIX, rng, Ids()),
        lambda rng: offline(10, Fixed(1), Uniform(0, 5), MIX, rng, Ids()),
        lambda rng: ClosedLoop(0, 10, Fixed(1), Fixed(1), MIX, rng, Ids()),
    ],
)
def test_bad_arguments_are_refused(make: object) -> None:
    with pytest.raises(BadInput):
        make(np.random.default_rng(0))  # type: ignore[operator]
