"""Pacing: keep a replica's steps inside the tightest TPOT objective it is running.

Each step gives every running sequence one token, so the step time is everyone's TPOT.
When the policy asks for it (`value`), cheap work (flex, batch) is held back, and if need
be paused, so that paying requests keep their objective. When paying work alone already
misses, nothing is held back: that would cost throughput and save no one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tokenfactory.perf.model import Batch

if TYPE_CHECKING:
    from tokenfactory.sim.replica import Replica, Seq

PACE_PREEMPTIONS = 8  # cheap decoders paused at most per step to bring it inside the cap
MIN_PACED_CHUNK = 512  # prompt tokens a paced step still takes, so new requests start
PACED_PREFILL_SHARE = 0.25  # of a paced step kept for paying prompts while they wait


class Pacer:
    """The step-time cap of one replica, from the objectives of what it runs."""

    def __init__(self, replica: Replica) -> None:
        self.replica = replica
        self.paced: dict[float, int] = {}  # running paying sequences by TPOT objective
        self.cap: float | None = None  # the cap the step being planned keeps

    def count(self, seq: Seq, delta: int) -> None:
        """Count a sequence in or out of the running TPOT objectives."""
        tier = seq.job.tier
        if tier.tpot_s is not None and not tier.preemptible:
            self.paced[tier.tpot_s] = self.paced.get(tier.tpot_s, 0) + delta
            if not self.paced[tier.tpot_s]:
                del self.paced[tier.tpot_s]

    def plan(self) -> float | None:
        """This step's cap (None: no pacing); pauses cheap decoders to get inside it."""
        r = self.replica
        self.cap = cap = r.policy.step_cap(min(self.paced) if self.paced else None)
        if cap is None:
            return None
        paying_step = self._decode_step(sum(self.paced.values()))
        if paying_step > cap:
            self.cap = None
            return None
        # Paying prompts waiting or in prefill need a share of the step, not just decoders.
        paying = any(not s.job.tier.preemptible for s in r.prefilling) or bool(
            r.waiting and not r.waiting[0][1].job.tier.preemptible
        )
        target = cap * (1 - PACED_PREFILL_SHARE) if paying else cap
        if paying_step > target:
            return cap  # pausing cheap decoders could not make that room: don't churn
        for _ in range(PACE_PREEMPTIONS):
            if self._decode_step(len(r.decoding)) <= target:
                break
            cheap = [s for s in r.decoding.values() if s.job.tier.preemptible]
            if not cheap:
                break
            r.preempt(min(cheap, key=lambda s: (s.job.density, -s.req.arrival_s)))
        return cap

    def budget(self, cap: float) -> int:
        """Prompt tokens a step may add and stay inside `cap` (at least a small chunk)."""
        r = self.replica
        decode = self._decode_step(len(r.decoding))
        return max(MIN_PACED_CHUNK, int((cap - decode) / r.perf.prefill_token_s()))

    def allows_one_more(self) -> bool:
        """Whether one more cheap sequence keeps the decode step inside this step's cap."""
        if self.cap is None:
            return True
        r = self.replica
        return self._decode_step(len(r.decoding) + len(r.prefilling) + 1) <= self.cap

    def _decode_step(self, n: int) -> float:
        """A decode-only step of `n` sequences at the running sequences' mean context."""
        r = self.replica
        context = r.decode_context * n / max(1, len(r.decoding))
        return r.perf.step_time(Batch(0, 0.0, 0.0, n, context, n))
