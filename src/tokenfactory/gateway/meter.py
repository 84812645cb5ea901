"""What a request earned and cost: tier served, revenue at its prices, attributed cost.

Money follows service: a realtime request that missed its TTFT or TPOT objective is
billed as standard. Cost is the replica's cost rate times the request's work, its share
of the replica's time: every second a replica runs requests is split evenly among them
(the dispatcher counts this as `Result.share_s`). Where the replica has a performance
model (a catalog GPU) the seconds are the model's, not the wall clock's: the request's
engine steps at the batch it ran in, each step's shared part (weight reads, launch)
split among the batch, the part its own tokens add paid in full. A lone request pays
its whole step times; requests that keep a replica busy add up to about its busy time.
What no request used is idle cost, which the ledger's P&L reports against each
replica's rate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from tokenfactory.economics import Prices
from tokenfactory.economics.revenue import revenue
from tokenfactory.gateway.floor import Result
from tokenfactory.ledger.records import Outcome, UsageEvent, round_usd, usd_to_micros
from tokenfactory.perf.model import Batch, PerfModel
from tokenfactory.sched import TierRule


@dataclass(frozen=True, slots=True)
class ReplicaCost:
    """A replica's cost rate and, where it has a GPU, its performance model."""

    name: str
    usd_per_s: Decimal
    perf: PerfModel | None = None
    idle_kw: float | None = None  # grid power of the replica's GPUs idle and fully busy;
    busy_kw: float | None = None  # None for a host without a catalog GPU

    def kwh(self, busy_s: float, window_s: float) -> float | None:
        """Energy drawn over a window in which it was busy `busy_s` seconds."""
        if self.idle_kw is None or self.busy_kw is None or window_s <= 0:
            return None
        share = min(1.0, busy_s / window_s)
        return (self.idle_kw + (self.busy_kw - self.idle_kw) * share) * window_s / 3600

    def work_s(self, result: Result, prompt_tokens: int) -> float:
        """Seconds of replica time the request cost: its share of the time it ran."""
        if self.perf is None:
            return result.share_s  # no model: its share of the wall clock
        # The mean batch it ran in, weighted as its share was: held time over share.
        batch = result.engine_s / result.share_s if result.share_s > 0 else 1.0
        cached = min(result.cached_tokens, prompt_tokens)
        return step_share_s(self.perf, prompt_tokens, cached, result.output_tokens, batch)


def step_share_s(
    perf: PerfModel, prompt_tokens: int, cached_tokens: int, output_tokens: int, batch: float
) -> float:
    """A request's share of the engine steps it ran in, at a mean batch of `batch`.

    Its prompt is one prefill step (which samples the first token), its other tokens one
    decode step each at its mean context. A decode step of `batch` sequences is split
    evenly among them; the prefill step pays its own tokens and a `batch`-th of the step's
    shared part (what a decode step alone costs more than its share in the batch).
    """
    batch = max(1.0, batch)
    new = prompt_tokens - cached_tokens
    context = prompt_tokens + output_tokens / 2  # mean context of its decode steps
    prefill = perf.step_time(
        Batch(
            new, new * cached_tokens + new * new / 2, cached_tokens, 0, 0.0, min(1, output_tokens)
        )
    )
    alone = _per_sequence_s(perf, context, 1)
    shared = _decode_s(perf, context, batch, alone)
    return max(0.0, prefill - (alone - shared)) + max(0, output_tokens - 1) * shared


def _decode_s(perf: PerfModel, context: float, batch: float, alone: float) -> float:
    """Seconds per sequence of a decode step of `batch` sequences at `context` tokens
    each (`alone`: a step of one). A fractional batch interpolates between the whole ones
    around it in 1 / batch, as the step's shared part divides (exact for a dense model)."""
    low = math.floor(batch)
    low_s = alone if low == 1 else _per_sequence_s(perf, context, low)
    if batch == low:
        return low_s
    along = (1 / batch - 1 / low) / (1 / (low + 1) - 1 / low)
    return low_s + along * (_per_sequence_s(perf, context, low + 1) - low_s)


def _per_sequence_s(perf: PerfModel, context: float, n: int) -> float:
    """Seconds per sequence of a decode step of `n` sequences at `context` tokens each."""
    return perf.step_time(Batch(0, 0.0, 0.0, n, n * context, n)) / n


def served_tier(tier: TierRule, result: Result) -> str:
    """The tier the request is billed at (`standard` for a realtime miss)."""
    if tier.name != "realtime" or result.ttft_s is None:
        return tier.name
    tpot = _tpot(result)
    missed_ttft = tier.ttft_s is not None and result.ttft_s > tier.ttft_s
    missed_tpot = tier.tpot_s is not None and tpot is not None and tpot > tier.tpot_s
    return "standard" if missed_ttft or missed_tpot else tier.name


def _tpot(result: Result) -> float | None:
    if result.output_tokens < 2 or result.ttft_s is None:
        return None
    # engine_s spans the whole generation; TTFT includes the queue, so use the rest.
    decode_s = max(0.0, result.queued_s + result.engine_s - result.ttft_s)
    return decode_s / (result.output_tokens - 1)


def usage_event(
    *,
    request_id: str,
    key_id: int,
    model: str,
    tier: TierRule,
    billed_tier: str,
    prices: Prices,
    result: Result,
    prompt_tokens: int,
    cost: ReplicaCost | None,
    started_at: datetime,
) -> UsageEvent:
    """The ledger event for one request attempt."""
    cached = min(result.cached_tokens, prompt_tokens)
    earned = Decimal(0)
    if result.outcome != "engine_error" or result.output_tokens:
        earned = revenue(prices, prompt_tokens, cached, result.output_tokens)
    work = cost.work_s(result, prompt_tokens) if cost else 0.0
    spent = cost.usd_per_s * Decimal(repr(work)) if cost else Decimal(0)
    ended = started_at + timedelta(seconds=result.queued_s + result.engine_s)
    return UsageEvent(
        request_id=request_id,
        key_id=key_id,
        model=model,
        replica=result.replica or None,
        tier_requested=tier.name,
        tier_served=billed_tier,
        input_tokens=prompt_tokens,
        cached_tokens=cached,
        output_tokens=result.output_tokens,
        started_at=started_at,
        ended_at=max(ended, datetime.now(UTC)),
        outcome=Outcome(result.outcome),
        queued_s=result.queued_s,
        ttft_s=result.ttft_s,
        revenue_micros=usd_to_micros(round_usd(earned)),
        cost_micros=usd_to_micros(round_usd(spent)),
        work_s=work,
        preemptions=result.preemptions,
        error=result.error,
    )
