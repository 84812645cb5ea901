"""What a scheduler knows of a request and of the tier it was bought in."""

from __future__ import annotations

from dataclasses import dataclass

TIER_ORDER = ("realtime", "standard", "flex", "batch")


@dataclass(frozen=True, slots=True)
class TierRule:
    """A tier as the scheduler sees it: objectives, patience, price and preemptibility."""

    name: str
    rank: int
    price_ratio: float
    ttft_s: float | None
    tpot_s: float | None
    patience_s: float
    preemptible: bool
    window_s: float | None = None

    @property
    def premium(self) -> bool:
        """Whether missing its objective costs money: a tier priced above standard is
        billed down to standard when it misses; standard and below are billed the same."""
        return self.price_ratio > 1


@dataclass(frozen=True, slots=True)
class Job:
    """One request waiting for, or holding, a place in an engine's batch.

    value: what it earns if served within its objective ($); work_s: predicted seconds
    of replica time it costs; pause_cost: what pausing it would cost ($), its context
    recomputed on resume at its replica's cost per second (0: unknown). All come from the
    caller (economics and perf).
    """

    id: int
    tier: TierRule
    arrival_s: float
    input_tokens: int
    output_tokens: int
    value: float
    work_s: float
    pause_cost: float = 0.0

    @property
    def density(self) -> float:
        """Money per second of replica time: what serving this request earns the factory."""
        return self.value / self.work_s if self.work_s > 0 else float("inf")

    @property
    def paused_context(self) -> int:
        """Tokens to re-read or recompute when it resumes after a pause, on average: its
        prompt and half its answer (callers price a pause on this)."""
        return self.input_tokens + self.output_tokens // 2

    @property
    def deadline_s(self) -> float:
        """When its first token is due (or, for batch, when its window closes)."""
        due = self.tier.ttft_s if self.tier.ttft_s is not None else self.tier.window_s
        return self.arrival_s + (due if due is not None else self.tier.patience_s)
