"""Pacing: keep a replica's steps inside what its paying requests' TPOT objectives allow.

Each step gives every running sequence one token, so the step time is everyone's TPOT.
Only premium requests (realtime) are paced: theirs is the only miss that costs money. A
TPOT objective is on a request's mean, so what a running request allows the next step
is its slack: its remaining time budget minus what its remaining tokens need at the
replica's decode pace. While every paying request has slack, steps take prompts as the
engine's budget allows (full throughput); when the policy asks for it (`value`) and one is
short of slack, cheap work (flex, batch) is held back, and if need be paused, for it. A
request that misses even at the paying work's own pace is not paced for: holding work
back would cost throughput and save no one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tokenfactory.perf.model import Batch
from tokenfactory.sched.policies import tpot_slack_s

if TYPE_CHECKING:
    from tokenfactory.sim.replica import Replica, Seq

PACE_PREEMPTIONS = 8  # cheap decoders paused at most per step to bring it inside the cap
MIN_PACED_CHUNK = 512  # prompt tokens a paced step still takes, so new requests start
PACED_PREFILL_SHARE = 0.25  # of a paced step kept for paying prompts while they wait
# The pacer aims a request's mean TPOT at this share of its objective (steps are planned
# from estimates, and one may overrun its cap by a minimum chunk), and counts on later
# steps taking at most this share of it: steps may exceed the objective only by the slack
# a request saved in shorter ones.
PACE_AIM = 0.95
PACE_PACE = 0.9


class Pacer:
    """The step-time cap of one replica, from the slack of the paying requests it runs."""

    def __init__(self, replica: Replica) -> None:
        self.replica = replica
        self.paced: dict[int, Seq] = {}  # running premium sequences with a TPOT objective
        self.paying: set[int] = set()  # running sequences that cannot be paused for them
        self.cap: float | None = None  # the cap the step being planned keeps

    def count(self, seq: Seq, delta: int) -> None:
        """Count a sequence in (delta > 0) or out of the paced ones."""
        tier = seq.job.tier
        if not tier.preemptible:
            if delta > 0:
                self.paying.add(seq.job.id)
            else:
                self.paying.discard(seq.job.id)
        # Only a premium tier's miss costs money; a standard request that runs slow is
        # billed the same, so holding steps short for it would only cost throughput.
        if tier.tpot_s is not None and tier.premium:
            if delta > 0:
                self.paced[seq.job.id] = seq
            else:
                self.paced.pop(seq.job.id, None)

    def plan(self) -> float | None:
        """This step's cap (None: no pacing); pauses cheap decoders to get inside it."""
        r = self.replica
        paying_step = self._decode_step(len(self.paying))
        self.cap = cap = r.policy.step_cap(self._slack(paying_step))
        if cap is None:
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

    def _slack(self, paying_step: float) -> float | None:
        """The smallest slack of the paced decoders that can still meet their objective."""
        r = self.replica
        now, clock = r.env.now, r.clock
        tightest: float | None = None
        for seq in self.paced.values():
            if seq.first_token_s is None or seq.job.id not in r.decoding:
                continue  # still in prefill: its TPOT clock has not started
            tpot = seq.job.tier.tpot_s
            assert tpot is not None
            generated = seq.gen + clock - seq.d0
            if generated >= seq.target:
                continue
            aim, pace = PACE_AIM * tpot, PACE_PACE * tpot
            slack = tpot_slack_s(aim, seq.first_token_s, generated, seq.target, now, pace)
            if tightest is not None and slack >= tightest:
                continue
            # Lost even if every later step were the paying work's alone: not paced for.
            if tpot_slack_s(tpot, seq.first_token_s, generated, seq.target, now, paying_step) < (
                paying_step
            ):
                continue
            tightest = slack
        return tightest

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
