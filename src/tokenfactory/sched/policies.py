"""Admission, ordering and preemption policies: fcfs, priority and value.

- `fcfs`: what engines do by default: first come, first served, nothing refused.
- `priority`: strict tier order, no preemption: what today's routers offer.
- `value`: ours. Paying tiers first by the money at stake (realtime by deadline, standard
  by deadline moved earlier for value density); preemptible work (flex, batch)
  is ordered by value density, paused when a paying request would otherwise lose more
  money waiting than the pause costs, and refused early when it cannot start within its
  client's patience; batch is hurried as its completion window runs out.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Protocol

from tokenfactory.sched.job import Job

# A batch request whose window has less than this share left is served as a paying one.
BATCH_HURRY_SHARE = 0.1


class Policy(Protocol):
    """What every policy decides; each method is a pure function of its arguments."""

    name: str
    preempts: bool

    def key(self, job: Job, now: float) -> tuple[float, float, int]:
        """Sort key of a waiting job: the smallest key is served first."""
        ...

    def admit(self, job: Job, expected_wait_s: float) -> bool:
        """Whether to accept a job now (False: refuse it, 429)."""
        ...

    def victims(self, blocked: Job, running: Sequence[Job], now: float, wait_s: float) -> list[Job]:
        """Running jobs to pause so that `blocked` can start now (empty: none).

        wait_s: how long `blocked` would wait for a place if no one were paused.
        """
        ...

    def worth_pausing(self, stake: float, victims: Sequence[Job]) -> bool:
        """Whether pausing `victims` costs no more than `stake`, the money (`at_stake`)
        the pause would save."""
        ...

    def step_cap(self, slack_s: float | None) -> float | None:
        """The longest engine step to allow, given the smallest TPOT slack of the running
        requests (`tpot_slack_s`; None: none runs with a TPOT objective). None: any."""
        ...


class FcfsPolicy:
    """First come, first served; nothing refused, nothing preempted."""

    name = "fcfs"
    preempts = False

    def key(self, job: Job, now: float) -> tuple[float, float, int]:
        """Arrival order."""
        return (0.0, job.arrival_s, job.id)

    def admit(self, job: Job, expected_wait_s: float) -> bool:
        """Everything is accepted."""
        return True

    def victims(self, blocked: Job, running: Sequence[Job], now: float, wait_s: float) -> list[Job]:
        """Never preempts."""
        return []

    def worth_pausing(self, stake: float, victims: Sequence[Job]) -> bool:
        """Never preempts."""
        return False

    def step_cap(self, slack_s: float | None) -> float | None:
        """Steps as long as the engine's budget makes them."""
        return None


class PriorityPolicy(FcfsPolicy):
    """Strict tier order (realtime, standard, flex, batch), arrival order within a tier."""

    name = "priority"

    def key(self, job: Job, now: float) -> tuple[float, float, int]:
        """Tier rank, then arrival."""
        return (float(job.tier.rank), job.arrival_s, job.id)


class ValuePolicy:
    """Serve by the money at stake; pause and refuse cheap work to protect paying work."""

    name = "value"
    preempts = True

    def key(self, job: Job, now: float) -> tuple[float, float, int]:
        """Paying tiers by rank, then premium ones by deadline and the others by deadline
        moved earlier by their value density; preemptible work by value density."""
        tier = job.tier
        if not tier.preemptible or _hurried(job, now):
            rank = float(tier.rank) if not tier.preemptible else 1.5
            return (rank, _virtual_deadline(job), job.id)
        return (float(tier.rank), -job.density, job.id)

    def admit(self, job: Job, expected_wait_s: float) -> bool:
        """Refuse preemptible work that would wait past its client's patience anyway."""
        return not job.tier.preemptible or expected_wait_s < job.tier.patience_s

    def victims(self, blocked: Job, running: Sequence[Job], now: float, wait_s: float) -> list[Job]:
        """The preemptible job cheapest to pause (then the least dense), when `blocked` is
        paying (or hurried) work that would miss its deadline waiting for a place and what
        it stands to lose there is more than the pause costs.

        A pause is not free: the paused job's context is recomputed or re-read when it
        resumes, so nothing is paused for a job that can wait for the next place, nor for
        one whose miss costs less than the pause.
        """
        hurried = _hurried(blocked, now)
        if blocked.tier.preemptible and not hurried:
            return []
        if now + wait_s <= _due_s(blocked, hurried):
            return []
        stake = at_stake(blocked)
        candidates = [
            j
            for j in running
            if j.tier.preemptible and not _hurried(j, now) and self.worth_pausing(stake, [j])
        ]
        if not candidates:
            return []
        return [min(candidates, key=lambda j: (j.pause_cost, j.density, -j.arrival_s))]

    def worth_pausing(self, stake: float, victims: Sequence[Job]) -> bool:
        """Pause when the pauses cost no more than the money they save. Where neither is
        known (an unpriced job, a replica of unknown cost: both 0) the objective decides."""
        return sum(v.pause_cost for v in victims) <= stake

    def step_cap(self, slack_s: float | None) -> float | None:
        """No step longer than the tightest running request can still afford.

        Each step gives every running sequence one token, so the step time is everyone's
        TPOT; the objective is on a request's mean TPOT, so a step may be long while every
        paying request has slack, and is held short only for one that has none left.
        """
        return slack_s


def tpot_slack_s(
    tpot_s: float, first_token_s: float, generated: int, target: int, now: float, pace_s: float
) -> float:
    """How long the next step may take and leave a decoding request its mean TPOT objective,
    if every later step takes `pace_s` (negative: it misses even so)."""
    budget = tpot_s * (target - 1) - (now - first_token_s)
    return budget - (target - generated - 1) * pace_s


def at_stake(job: Job) -> float:
    """What a paying job loses when it waits past its due time ($): a premium job its
    premium over standard (a miss is billed as standard), any other all it earns (its
    client gives up, or its batch window closes)."""
    if job.tier.premium:
        return job.value * (1 - 1 / job.tier.price_ratio)
    return job.value


def _virtual_deadline(job: Job) -> float:
    """When a paying job is due, for ordering: a premium job's (realtime) true deadline,
    since a miss loses its premium; a standard job's deadline moved earlier by one TTFT
    objective per e-fold of value density.

    A standard request that runs late is billed the same, so what is at stake is only
    whether it is served before its client gives up. Under overload every place serves
    someone, and a denser request earns more per second of replica time; the shift is
    bounded by the density spread, so a sparse request is passed over only by much
    denser ones (or ones that came shortly after it), never starved while there is room.
    """
    tier = job.tier
    if tier.premium or tier.ttft_s is None or job.value <= 0 or job.work_s <= 0:
        return job.deadline_s
    return job.deadline_s - tier.ttft_s * math.log(job.density)


def _due_s(job: Job, hurried: bool) -> float:
    """When waiting starts to cost a paying job money: a premium job's deadline (a miss
    loses its premium), a hurried batch job's window end, and otherwise its client's
    patience (a late standard request pays the same; one that is never served, nothing)."""
    if job.tier.premium or hurried:
        return job.deadline_s
    return job.arrival_s + job.tier.patience_s


def _hurried(job: Job, now: float) -> bool:
    """A batch job close to the end of its completion window."""
    window = job.tier.window_s
    if window is None:
        return False
    return job.arrival_s + window - now < BATCH_HURRY_SHARE * window


POLICIES: dict[str, Policy] = {p.name: p for p in (FcfsPolicy(), PriorityPolicy(), ValuePolicy())}
