"""Admission, ordering and preemption policies: fcfs, priority and value.

- `fcfs`: what engines do by default: first come, first served, nothing refused.
- `priority`: strict tier order, no preemption: what today's routers offer.
- `value`: ours. Paying tiers first by the money at stake; preemptible work (flex, batch)
  is ordered by value density, paused when a paying request would otherwise wait, and
  refused early when it cannot start within its client's patience; batch is hurried as
  its completion window runs out.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from tokenfactory.sched.job import Job

# A batch request whose window has less than this share left is served as a paying one.
BATCH_HURRY_SHARE = 0.1
# Steps are kept this far inside the tightest TPOT objective of the running requests.
PACE_MARGIN = 0.9


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

    def victims(self, blocked: Job, running: Sequence[Job], now: float) -> list[Job]:
        """Running jobs to pause so that `blocked` can start now (empty: none)."""
        ...

    def step_cap(self, tightest_tpot_s: float | None) -> float | None:
        """The longest engine step to allow while such a TPOT objective runs (None: any)."""
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

    def victims(self, blocked: Job, running: Sequence[Job], now: float) -> list[Job]:
        """Never preempts."""
        return []

    def step_cap(self, tightest_tpot_s: float | None) -> float | None:
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
        """Paying tiers by rank then deadline; preemptible work by value density."""
        tier = job.tier
        if not tier.preemptible or _hurried(job, now):
            # A realtime miss loses half its price, a standard one only risks abandonment:
            # rank first, and within a rank the earliest deadline.
            rank = float(tier.rank) if not tier.preemptible else 1.5
            return (rank, job.deadline_s, job.id)
        return (float(tier.rank), -job.density, job.id)

    def admit(self, job: Job, expected_wait_s: float) -> bool:
        """Refuse preemptible work that would wait past its client's patience anyway."""
        return not job.tier.preemptible or expected_wait_s < job.tier.patience_s

    def victims(self, blocked: Job, running: Sequence[Job], now: float) -> list[Job]:
        """The least valuable preemptible job, when `blocked` is paying (or hurried) work."""
        if blocked.tier.preemptible and not _hurried(blocked, now):
            return []
        candidates = [j for j in running if j.tier.preemptible and not _hurried(j, now)]
        if not candidates:
            return []
        return [min(candidates, key=lambda j: (j.density, -j.arrival_s))]

    def step_cap(self, tightest_tpot_s: float | None) -> float | None:
        """Keep steps inside the tightest running TPOT objective, with a margin.

        Each step gives every running sequence one token, so the step time is everyone's
        TPOT: cheap work is held back before it makes a paying request miss.
        """
        return None if tightest_tpot_s is None else PACE_MARGIN * tightest_tpot_s


def _hurried(job: Job, now: float) -> bool:
    """A batch job close to the end of its completion window."""
    window = job.tier.window_s
    if window is None:
        return False
    return job.arrival_s + window - now < BATCH_HURRY_SHARE * window


POLICIES: dict[str, Policy] = {p.name: p for p in (FcfsPolicy(), PriorityPolicy(), ValuePolicy())}
