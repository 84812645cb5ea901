"""Scheduling policies as pure functions: ordering keys, admission, victims, batch hurry."""

from __future__ import annotations

import math

from tokenfactory.sched import POLICIES, FcfsPolicy, Job, PriorityPolicy, TierRule, ValuePolicy
from tokenfactory.sched.policies import BATCH_HURRY_SHARE

REALTIME = TierRule("realtime", 0, 2.0, 0.45, 0.04, 5.0, False)
STANDARD = TierRule("standard", 1, 1.0, 2.0, 0.2, 30.0, False)
FLEX = TierRule("flex", 2, 0.5, None, None, 900.0, True)
BATCH = TierRule("batch", 3, 0.5, None, None, 86400.0, True, 86400.0)


def job(i: int, tier: TierRule, arrival: float = 0.0, value: float = 1.0, work: float = 1.0) -> Job:
    return Job(i, tier, arrival, 100, 100, value, work)


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


def test_value_victims_are_the_least_dense_preemptible_job() -> None:
    p = POLICIES["value"]
    running = [
        job(0, REALTIME, value=0.001),  # least dense of all, but not preemptible
        job(1, FLEX, 0.0, value=3.0),
        job(2, FLEX, 0.0, value=1.0),
        job(3, BATCH, 0.0, value=2.0),
        job(4, FLEX, 1.0, value=1.0),  # as dense as 2 but later: paused first
    ]
    assert [v.id for v in p.victims(job(9, REALTIME), running, 1.0)] == [4]
    assert [v.id for v in p.victims(job(9, STANDARD), running[:4], 1.0)] == [2]
    assert p.victims(job(9, FLEX, value=100.0), running, 1.0) == []  # cheap work never pauses
    assert p.victims(job(9, BATCH, value=100.0), running, 1.0) == []
    assert p.victims(job(9, REALTIME), [running[0]], 1.0) == []
    for name in ("fcfs", "priority"):
        assert POLICIES[name].victims(job(9, REALTIME), running, 1.0) == []


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
    assert p.victims(old, [running[0]], early) == []
    assert [v.id for v in p.victims(old, [running[0]], late)] == [3]
    assert [v.id for v in p.victims(job(9, REALTIME), running, early)] == [0]
    assert [v.id for v in p.victims(job(9, REALTIME), running, late)] == [3]
