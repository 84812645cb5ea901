"""Pacing: keep a replica's steps inside what its paying requests' TPOT objectives allow.

Each step gives every running sequence one token, so the step time is everyone's TPOT.
Only premium requests (realtime) are paced: theirs is the only miss that costs money. A
TPOT objective is on a request's mean, so what a running request allows the next step
is its slack: its remaining time budget minus what its remaining tokens need at the
replica's decode pace. While every paying request has slack, steps take prompts as the
engine's budget allows (full throughput); when the policy asks for it (`value`) and one is
short of slack, cheap work (flex, batch) is held back, and if need be paused, for it. A
request that misses even at the paying work's own pace, or whose first token came late
(it is billed as standard), is not paced for: holding work back would cost throughput and
save no one. A pause is made only when it pays: see `Pacer._pause_cheap`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tokenfactory.perf.model import Batch
from tokenfactory.sched.policies import at_stake, tpot_slack_s

if TYPE_CHECKING:
    from tokenfactory.sim.replica import Replica, Seq

PACE_PREEMPTIONS = 8  # cheap decoders paused at most per step; a step needing more gets none
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
        slacks = self._slacks(paying_step)
        self.cap = cap = r.policy.step_cap(min(slacks.values(), default=None))
        if cap is None:
            return None
        # Paying prompts waiting or in prefill need a share of the step, not just decoders.
        paying = any(not s.job.tier.preemptible for s in r.prefilling) or bool(
            r.waiting and not r.waiting[0][1].job.tier.preemptible
        )
        target = cap * (1 - PACED_PREFILL_SHARE) if paying else cap
        if paying_step > target:
            return cap  # pausing cheap decoders could not make that room: don't churn
        # Each request's own share of the target: the tightest one's is the target itself.
        self._pause_cheap(target, {i: slack * target / cap for i, slack in slacks.items()})
        return cap

    def _pause_cheap(self, target: float, slacks: dict[int, float]) -> None:
        """Pause the least dense cheap decoders that bring the decode step inside `target`,
        if few enough do and the premiums at stake outweigh what the pauses cost.

        Each pause shortens every later step by one sequence's share (well under a
        millisecond), and the paused context is recomputed when it resumes, a prefill of
        thousands of tokens that the paced requests still running share a step with. So
        the premium of a paced request that this step leaves behind (`slacks` below the
        step) counts only if the shorter steps, over the tokens it has left, save it more
        than the victims' recompute takes; the sum is weighed against the pauses' cost
        by the policy (`worth_pausing`). A pause that cannot bring the step inside the
        target, or that costs more than it saves, is not made.
        """
        r = self.replica
        n = len(r.decoding)
        step = self._decode_step(n)
        if step <= target:
            return
        cheap = sorted(
            (s for s in r.decoding.values() if s.job.tier.preemptible),
            key=lambda s: (s.job.density, -s.req.arrival_s),
        )
        need = next(
            (
                k
                for k in range(1, min(PACE_PREEMPTIONS, len(cheap)) + 1)
                if self._decode_step(n - k) <= target
            ),
            None,
        )
        if need is None:
            return
        victims = cheap[:need]
        # A request gains the shorter step on each token it has left, and loses the time
        # the victims' contexts take to recompute when they resume beside it.
        saved = step - self._decode_step(n - need)
        resume = sum(r.perf.work_s(v.ctx0 + r.clock - v.d0, 0, 0) for v in victims)
        stake = sum(
            at_stake(self.paced[i].job)
            for i, slack in slacks.items()
            if slack < step and saved * self._left(self.paced[i]) > resume
        )
        if r.policy.worth_pausing(stake, [s.job for s in victims]):
            for seq in victims:
                r.preempt(seq)

    def _left(self, seq: Seq) -> int:
        """Tokens a decoding sequence has still to generate."""
        return seq.target - (seq.gen + self.replica.clock - seq.d0)

    def _slacks(self, paying_step: float) -> dict[int, float]:
        """The slack of each paced decoder that can still meet its objective, by job id."""
        r = self.replica
        now, clock = r.env.now, r.clock
        out: dict[int, float] = {}
        for seq in self.paced.values():
            if seq.first_token_s is None or seq.job.id not in r.decoding:
                continue  # still in prefill: its TPOT clock has not started
            if seq.first_token_s > seq.job.deadline_s:
                continue  # its first token came late: billed as standard whatever its pace
            tpot = seq.job.tier.tpot_s
            assert tpot is not None
            generated = seq.gen + clock - seq.d0
            if generated >= seq.target:
                continue
            # Lost even if every later step were the paying work's alone: not paced for.
            if tpot_slack_s(tpot, seq.first_token_s, generated, seq.target, now, paying_step) < (
                paying_step
            ):
                continue
            aim, pace = PACE_AIM * tpot, PACE_PACE * tpot
            out[seq.job.id] = tpot_slack_s(aim, seq.first_token_s, generated, seq.target, now, pace)
        return out

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
