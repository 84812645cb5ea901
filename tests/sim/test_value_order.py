"""Under `value`, standard requests waiting for a place go by value density, within bounds."""

from __future__ import annotations

import math

from tokenfactory.perf.model import PerfModel
from tokenfactory.sched import TierRule
from tokenfactory.sim.fleet import TierPrice
from tokenfactory.sim.replica import EngineLimits
from tokenfactory.sim.run import simulate
from tokenfactory.workload import Request

STANDARD = TierRule("standard", 1, 1.0, 2.0, None, math.inf, False)


def first_tokens(make_setup, make_tiers, policy: str, dense_at: float) -> dict[int, float]:
    """One place in the batch, held by a first request; behind it a sparse request (short
    prompt, long answer) and, `dense_at` seconds later, a dense one (long prompt, short
    answer: a token of prefill costs far less replica time than one of decode)."""
    reqs = [
        Request(0, 0.0, 200, 2000, "standard"),
        Request(1, 0.01, 100, 400, "standard"),
        Request(2, 0.01 + dense_at, 3000, 4, "standard"),
    ]
    price = TierPrice(1e-6, 1e-6, 1e-6)
    setup = make_setup(
        reqs,
        limits=EngineLimits(max_num_seqs=1),
        policy=policy,
        tiers={**make_tiers(), "standard": STANDARD},
        prices={name: price for name in make_tiers()},
    )
    outcomes = simulate(setup).fleet.outcomes
    assert all(o.status == "ok" for o in outcomes) and len(outcomes) == 3
    return {o.req.id: o.first_token_s for o in outcomes if o.first_token_s is not None}


def shift_s(perf: PerfModel) -> float:
    """How far the dense request's density moves it ahead: a TTFT objective per e-fold."""
    sparse = 500 / perf.work_s(100, 0, 400)
    dense = 3004 / perf.work_s(3000, 0, 4)
    assert dense > sparse
    return STANDARD.ttft_s * math.log(dense / sparse)  # type: ignore[operator]


def test_value_serves_the_denser_standard_request_first(make_setup, make_tiers, perf) -> None:
    got = first_tokens(make_setup, make_tiers, "value", shift_s(perf) / 2)
    assert got[2] < got[1]
    got = first_tokens(make_setup, make_tiers, "priority", shift_s(perf) / 2)
    assert got[1] < got[2]


def test_density_moves_a_request_ahead_only_so_far(make_setup, make_tiers, perf) -> None:
    # A dense request arriving later than the sparse one by more than its density buys
    # waits its turn, though the first request still holds the place when it comes.
    late = 1.5 * shift_s(perf)
    got = first_tokens(make_setup, make_tiers, "value", late)
    assert got[1] > 0.01 + late
    assert got[1] < got[2]
