"""Scheduling policies as pure functions: ordering keys, admission, victims, batch hurry."""

from __future__ import annotations

import math

import pytest

from tokenfactory.sched import POLICIES, FcfsPolicy, Job, PriorityPolicy, TierRule, ValuePolicy
from tokenfactory.sched.policies import BATCH_HURRY_SHARE, at_stake, tpot_slack_s

REALTIME = TierRule("realtime", 0, 2.0, 0.45, 0.04, 5.0, False)
STANDARD = TierRule("standard", 1, 1.0, 2.0, 0.2, 30.0, False)
FLEX = TierRule("flex", 2, 0.5, None, None, 900.0, True)
BATCH = TierRule("batch", 3, 0.5, None, None, 86400.0, True, 86400.0)


def job(
    i: int,
    tier: TierRule,
    arrival: float = 0.0,
    value: float = 1.0,
    work: float = 1.0,
    pause_cost: float = 0.0,
) -> Job:
    return Job(i, tier, arrival, 100, 100, value, work, pause_cost)


def order(policy: str, jobs: list[Job], now: float = 0.0) -> list[int]:
    p = POLICIES[policy]
    return [j.id for j in sorted(jobs, key=lambda j: p.key(j, now))]


def test_the_registry_holds_each_policy_under_its_name() -> None:
    assert isinstance(POLICIES["fcfs"], FcfsPolicy)
    assert isinstance(POLICIES["priority"], PriorityPolicy)
    assert isinstance(POLICIES["value"], ValuePolicy)
    assert not POLICIES["fcfs"].preempts and not POLICIES["priority"].preempts
    assert POLICIES["value"].preempts


def test_fcfs_serves_in_arrival_order_whatever_the_tier() -> None:
    jobs = [job(0, FLEX, 0.3), job(1, REALTIME, 0.5), job(2, BATCH, 0.1), job(3, STANDARD, 0.3)]
    assert order("fcfs", jobs) == [2, 0, 3, 1]  # same arrival: by id


def test_priority_orders_by_tier_rank_then_arrival() -> None:
    jobs = [job(0, FLEX, 0.0), job(1, REALTIME, 0.5), job(2, BATCH, 0.0), job(3, STANDARD, 0.1)]
    jobs.append(job(4, REALTIME, 0.2))
    assert order("priority", jobs) == [4, 1, 3, 0, 2]


def test_value_puts_paying_tiers_ahead_and_orders_cheap_work_by_density() -> None:
    jobs = [
        job(0, FLEX, 0.0, value=1.0, work=1.0),
        job(1, FLEX, 0.1, value=5.0, work=1.0),  # denser: first among flex
        job(2, STANDARD, 0.2),
        job(3, REALTIME, 0.9),
        job(4, REALTIME, 0.3),  # earlier deadline within realtime
        job(5, BATCH, 0.0, value=100.0, work=1.0),  # dense, but batch ranks after flex
    ]
    assert order("value", jobs) == [4, 3, 2, 1, 0, 5]


def test_value_admit_refuses_only_preemptible_work_that_would_outwait_its_client() -> None:
    p = POLICIES["value"]
    assert p.admit(job(0, FLEX), 899.0)
    assert not p.admit(job(0, FLEX), 900.0)
    assert not p.admit(job(0, FLEX), 10_000.0)
    assert not p.admit(job(0, BATCH), 86400.0)
    for tier in (REALTIME, STANDARD):
        assert p.admit(job(0, tier), math.inf)
    for name in ("fcfs", "priority"):
        assert POLICIES[name].admit(job(0, FLEX), math.inf)


LATE = math.inf  # a wait for a place that no objective survives


def test_value_victims_are_the_least_dense_preemptible_job() -> None:
    p = POLICIES["value"]
    running = [
        job(0, REALTIME, value=0.001),  # least dense of all, but not preemptible
        job(1, FLEX, 0.0, value=3.0),
        job(2, FLEX, 0.0, value=1.0),
        job(3, BATCH, 0.0, value=2.0),
        job(4, FLEX, 1.0, value=1.0),  # as dense as 2 but later: paused first
    ]
    assert [v.id for v in p.victims(job(9, REALTIME), running, 1.0, LATE)] == [4]
    assert [v.id for v in p.victims(job(9, STANDARD), running[:4], 1.0, LATE)] == [2]
    assert p.victims(job(9, FLEX, value=100.0), running, 1.0, LATE) == []  # cheap work never pauses
    assert p.victims(job(9, BATCH, value=100.0), running, 1.0, LATE) == []
    assert p.victims(job(9, REALTIME), [running[0]], 1.0, LATE) == []
    for name in ("fcfs", "priority"):
        assert POLICIES[name].victims(job(9, REALTIME), running, 1.0, LATE) == []


def test_batch_near_the_end_of_its_window_is_treated_as_paying() -> None:
    p = POLICIES["value"]
    window = BATCH.window_s
    assert window is not None
    old = job(0, BATCH, 0.0, value=0.001)
    late = (1 - BATCH_HURRY_SHARE / 2) * window  # less than the hurry share of it left
    early = (1 - 2 * BATCH_HURRY_SHARE) * window
    flex, standard = job(1, FLEX, late, value=50.0), job(2, STANDARD, late)
    assert order("value", [old, flex, standard], now=early) == [2, 1, 0]
    assert order("value", [old, flex, standard], now=late) == [2, 0, 1]
    # Hurried, it may pause cheap work and is not paused itself.
    running = [job(3, FLEX, late, value=0.5), old]
    assert p.victims(old, [running[0]], early, LATE) == []
    assert [v.id for v in p.victims(old, [running[0]], late, LATE)] == [3]
    assert [v.id for v in p.victims(job(9, REALTIME), running, early, LATE)] == [0]
    assert [v.id for v in p.victims(job(9, REALTIME), running, late, LATE)] == [3]


def test_value_pauses_nothing_for_a_job_that_can_wait_for_the_next_place() -> None:
    p = POLICIES["value"]
    running = [job(1, FLEX, value=1.0), job(2, FLEX, value=3.0)]
    # Realtime's first token is due 0.45 s after arrival: at 0.1 s it has 0.35 s left.
    assert p.victims(job(9, REALTIME), running, 0.1, 0.3) == []
    assert [v.id for v in p.victims(job(9, REALTIME), running, 0.1, 0.4)] == [1]
    # A late standard request pays the same: it pauses work only when waiting would
    # outlast its client's patience (30 s), not merely its 2 s TTFT objective.
    assert p.victims(job(9, STANDARD), running, 0.1, 1.0) == []
    assert p.victims(job(9, STANDARD), running, 0.1, 2.0) == []
    assert p.victims(job(9, STANDARD), running, 0.1, 29.8) == []
    assert [v.id for v in p.victims(job(9, STANDARD), running, 0.1, 30.0)] == [1]


def test_what_is_at_stake_is_a_premium_tiers_premium_and_any_other_tiers_whole_value() -> None:
    # Realtime at 2x standard is billed as standard when it misses: half its value is lost.
    assert at_stake(job(0, REALTIME, value=1.0)) == 0.5
    premium3 = TierRule("premium3", 0, 3.0, 0.45, 0.04, 5.0, False)
    assert at_stake(job(0, premium3, value=3.0)) == pytest.approx(2.0, rel=1e-12)
    # A standard request whose client gives up, or batch whose window closes, earns nothing.
    assert at_stake(job(0, STANDARD, value=1.0)) == 1.0
    assert at_stake(job(0, BATCH, value=0.25)) == 0.25


def test_value_pauses_nothing_that_costs_more_than_the_blocked_job_stands_to_lose() -> None:
    p = POLICIES["value"]
    dear = [job(1, FLEX, value=1.0, pause_cost=0.6)]
    # Realtime worth 1.0 loses only its 0.5 premium by waiting: a 0.6 pause is not worth it.
    assert p.victims(job(9, REALTIME, value=1.0), dear, 1.0, LATE) == []
    assert [v.id for v in p.victims(job(9, REALTIME, value=1.4), dear, 1.0, LATE)] == [1]
    # Standard loses all of its 1.0 if its client gives up: worth the 0.6.
    assert [v.id for v in p.victims(job(9, STANDARD, value=1.0), dear, 1.0, LATE)] == [1]
    # Among those worth pausing, the cheapest pause goes first, whatever its density.
    running = [*dear, job(2, FLEX, value=9.0, pause_cost=0.1), job(3, FLEX, pause_cost=0.2)]
    assert [v.id for v in p.victims(job(9, REALTIME, value=1.0), running, 1.0, LATE)] == [2]


def test_worth_pausing_weighs_the_pauses_together_and_only_value_pauses() -> None:
    victims = [job(1, FLEX, pause_cost=0.3), job(2, FLEX, pause_cost=0.3)]
    assert POLICIES["value"].worth_pausing(0.6, victims)
    assert not POLICIES["value"].worth_pausing(0.59, victims)
    # Nothing known of either side (an unpriced request, a replica of unknown cost).
    assert POLICIES["value"].worth_pausing(0.0, [job(1, FLEX)])
    for name in ("fcfs", "priority"):
        assert not POLICIES[name].worth_pausing(1.0, victims)


def test_tpot_slack_is_the_budget_left_after_the_remaining_tokens_at_pace() -> None:
    # 101 tokens at 40 ms mean: 4 s from the first token to the last. 0.5 s spent on the
    # first 11; 89 tokens after the next step, at 36 ms each, need 3.204 s.
    slack = tpot_slack_s(0.04, 1.0, 11, 101, 1.5, 0.036)
    assert slack == pytest.approx(4.0 - 0.5 - 89 * 0.036, rel=1e-12)
    # The last token may take whatever is left of the budget.
    assert tpot_slack_s(0.04, 0.0, 100, 101, 3.9, 0.036) == pytest.approx(0.1, rel=1e-12)
    assert tpot_slack_s(0.04, 0.0, 100, 101, 4.2, 0.036) < 0  # it has missed


def test_a_step_inside_the_slack_leaves_the_request_its_objective() -> None:
    """Steps each within the slack they are given end inside the mean TPOT objective, even
    when some are far longer than the objective itself."""
    tpot, pace, target = 0.04, 0.036, 60
    first, now, generated = 0.0, 0.0, 1
    steps = []
    while generated < target:
        slack = tpot_slack_s(tpot, first, generated, target, now, pace)
        step = slack if generated % 10 == 1 else 0.02  # greedy bursts, short steps between
        steps.append(step)
        now += step
        generated += 1
    assert max(steps) > 3 * tpot  # bursts far above the objective...
    assert now / (target - 1) <= tpot + 1e-12  # ...and still the mean is kept


def test_only_value_caps_steps_and_it_caps_them_at_the_slack() -> None:
    assert POLICIES["value"].step_cap(0.123) == 0.123
    assert POLICIES["value"].step_cap(None) is None
    for name in ("fcfs", "priority"):
        assert POLICIES[name].step_cap(0.01) is None


def test_only_a_tier_priced_above_standard_is_premium() -> None:
    assert REALTIME.premium
    assert not STANDARD.premium and not FLEX.premium and not BATCH.premium


def test_value_moves_a_denser_standard_request_ahead_by_a_ttft_objective_per_e_fold() -> None:
    sparse = job(0, STANDARD, 0.0, value=1.0)
    e = math.e
    assert order("value", [sparse, job(1, STANDARD, 1.9, value=e)]) == [1, 0]
    assert order("value", [sparse, job(1, STANDARD, 2.1, value=e)]) == [0, 1]
    assert order("value", [sparse, job(1, STANDARD, 3.9, value=e * e)]) == [1, 0]
    # Work counts as much as value: the same money for half the replica time is denser.
    assert order("value", [sparse, job(1, STANDARD, 1.0, value=1.0, work=0.5)]) == [1, 0]
    # Priority keeps arrival order within the tier whatever the money.
    assert order("priority", [sparse, job(1, STANDARD, 1.0, value=100.0)]) == [0, 1]


def test_value_keeps_premium_requests_in_deadline_order_whatever_their_density() -> None:
    # A realtime miss loses its premium: the earliest deadline first, even if less dense.
    jobs = [job(0, REALTIME, 0.0, value=1.0), job(1, REALTIME, 0.1, value=1000.0)]
    assert order("value", jobs) == [0, 1]
    # And a denser standard request never passes realtime work.
    assert order("value", [job(0, REALTIME, 5.0), job(1, STANDARD, 0.0, value=1e9)]) == [0, 1]


def test_value_orders_requests_without_a_price_by_deadline() -> None:
    # The twin and an unpriced gateway give no value or work: no density to weigh.
    jobs = [job(0, STANDARD, 0.5, 0.0, 0.0), job(1, STANDARD, 0.2, 0.0, 0.0)]
    assert order("value", jobs) == [1, 0]
    assert all(math.isfinite(POLICIES["value"].key(j, 0.0)[1]) for j in jobs)
