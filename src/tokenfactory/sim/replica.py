"""One simulated engine replica: continuous batching at iteration level, like vLLM's.

Each step serves every decoding sequence one token, continues prompts being prefilled in
chunks, and admits waiting sequences in policy order while the token budget, the
sequence limit and the KV cache allow. When KV runs out a sequence is preempted by
recompute: it keeps what it generated and goes back to the queue.

Speed: a sequence in decode is not touched each step. The replica keeps a decode clock
D; a decoding sequence's progress is D - d0, completions sit in a heap by the clock
value at which they finish, and when nothing can change but decoding, many identical
steps run as one event whose duration sums their (linearly growing) step times. An
arrival cuts such a run at the next step boundary.

Cost, as the floor's meter counts it: each step's (or run's) time is split evenly among
the sequences in it. Decoders share a clock for this too: `shares` sums the time per
sequence of every step, and a decoding sequence's share is its rise while it decodes.
"""

from __future__ import annotations

import heapq
import math
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field

from tokenfactory.perf.model import Batch, PerfModel
from tokenfactory.sched import Job, Policy
from tokenfactory.sim.clock import Environment
from tokenfactory.sim.pacing import Pacer
from tokenfactory.workload import Request


@dataclass(frozen=True, slots=True)
class EngineLimits:
    """The engine's batching knobs."""

    max_num_seqs: int = 256
    max_batched_tokens: int = 8192
    chunked_prefill: bool = True
    block_size: int = 16


@dataclass(slots=True, eq=False)
class Seq:
    """A request inside a replica: its prompt progress and its decode progress."""

    req: Request
    job: Job
    key: tuple[float, float, int]
    prompt: int  # tokens to prefill: the input, plus output generated before a preemption
    target: int  # output tokens wanted in all
    gen: int = 0  # output tokens generated when the decode clock read d0
    prefilled: int = 0
    cached: int = 0  # prompt tokens found in the prefix cache at first admission
    d0: int = 0
    ctx0: int = 0  # context length when the decode clock read d0
    first_token_s: float | None = None
    preemptions: int = 0
    chunk: int = 0  # prompt tokens in the step in flight
    done_s: float = 0.0
    share_s: float = 0.0  # its share of the steps it was in (while it decodes, up to s0)
    s0: float = 0.0  # the replica's share clock when it last settled `share_s`


@dataclass(slots=True)
class _Run:
    """The step (or run of identical decode steps) in flight."""

    start: float
    steps: int
    first_s: float
    last_s: float
    prefills: list[Seq] = field(default_factory=list)
    version: int = 0


Finish = Callable[[Seq, str], None]
Step = Callable[[], None]


class Replica:
    """A replica in the simulation, driven by the environment's events."""

    def __init__(
        self,
        index: int,
        env: Environment,
        perf: PerfModel,
        limits: EngineLimits,
        policy: Policy,
        on_finish: Finish,
        on_step: Step | None = None,
    ) -> None:
        self.index = index
        self.env = env
        self.perf = perf
        self.limits = limits
        self.policy = policy
        self.on_finish = on_finish
        # A real-time driver (the twin) hears of every step end, so runs are one step long.
        self.on_step = on_step
        self.capacity = perf.kv_capacity_tokens
        self.waiting: list[tuple[tuple[float, float, int], Seq]] = []
        self.prefilling: list[Seq] = []
        self.decoding: dict[int, Seq] = {}
        self.finishing: list[tuple[int, int, Seq]] = []
        self.clock = 0  # the decode clock D
        self.decode_context = 0  # sum of context lengths of decoding sequences at D
        self.kv_used = 0.0
        self.slack = (limits.block_size - 1) / 2  # a sequence's half-filled last block
        # session (or a paused sequence) -> cached tokens, least recently used first
        self.cache: OrderedDict[Hashable, int] = OrderedDict()
        self.cached_tokens = 0
        self.run: _Run | None = None
        self._runs = 0  # every scheduled end carries its run's number; stale ends are ignored
        self.pacer = Pacer(self)
        self.busy_s = 0.0
        self.shares = 0.0  # the share clock: each step's time over the sequences in it, summed
        self.queued_tokens = 0
        self.generated_tokens = 0
        self.preemptions = 0

    # -- load signals -------------------------------------------------------------
    @property
    def running(self) -> int:
        """Sequences holding a place in the batch."""
        return len(self.prefilling) + len(self.decoding)

    def outstanding_tokens(self) -> int:
        """Prompt tokens queued here: what a router balances."""
        return self.queued_tokens + self.running * 64

    def holds(self, session: int | None) -> bool:
        """Whether this replica's prefix cache holds a session's context."""
        return session is not None and session in self.cache

    # -- arrivals --------------------------------------------------------------------
    def submit(self, req: Request, job: Job) -> None:
        """Queue a request here; start stepping if idle, or cut a decode run short."""
        seq = Seq(req, job, self.policy.key(job, self.env.now), req.input_tokens, req.output_tokens)
        if not self._servable(req):
            self.on_finish(seq, "refused")
            return
        self._enqueue(seq)
        if self.run is None:
            self._plan()
        else:
            self._cut()

    def _servable(self, req: Request) -> bool:
        """Whether the engine could ever hold this request, as engines check at the door.

        Its whole context must fit the model's window and the KV cache and, without
        chunked prefill, its prompt one step's token budget.
        """
        context = req.input_tokens + req.output_tokens
        window = self.perf.deployment.model.max_context
        if context > min(window, self.capacity - self.slack):
            return False
        return self.limits.chunked_prefill or req.input_tokens <= self.limits.max_batched_tokens

    def _enqueue(self, seq: Seq) -> None:
        heapq.heappush(self.waiting, (seq.key, seq))
        self.queued_tokens += seq.prompt - seq.prefilled

    def _cut(self) -> None:
        """End a multi-step decode run at the first step boundary after now."""
        run = self.run
        assert run is not None
        if run.steps <= 1:
            return
        elapsed = self.env.now - run.start
        slope = (run.last_s - run.first_s) / (run.steps - 1)
        # time of j steps: j * first + slope * j (j - 1) / 2; find the smallest j >= elapsed
        a, b = slope / 2, run.first_s - slope / 2
        j = elapsed / b if a <= 1e-15 else (-b + math.sqrt(b * b + 4 * a * elapsed)) / (2 * a)
        steps = min(run.steps, max(1, math.ceil(j - 1e-9)))
        if steps == run.steps:
            return
        last = run.first_s + slope * (steps - 1)
        run.steps, run.last_s = steps, last
        self._runs += 1
        run.version = version = self._runs
        self.env.at(run.start + steps * (run.first_s + last) / 2, lambda: self._end(version))

    # -- one step --------------------------------------------------------------------
    def _plan(self) -> None:
        """Choose the next step's batch and schedule its end."""
        while self.decoding and self.kv_used + len(self.decoding) > self.capacity:
            self._preempt_worst()
        budget = self.limits.max_batched_tokens - len(self.decoding)
        cap = self.pacer.plan()
        if cap is not None:
            budget = min(budget, self.pacer.budget(cap))
        prefills: list[Seq] = []
        for seq in self.prefilling:
            chunk = self._chunk(seq, budget) if budget > 0 else 0
            if chunk == 0:
                break
            seq.chunk = chunk
            prefills.append(seq)
            budget -= chunk
            self.kv_used += chunk
        paused = self.preemptions
        stuck = self._admit(budget, prefills)
        n_dec = len(self.decoding)
        if not prefills and not n_dec:
            if self.prefilling and (self.preemptions > paused or len(self.prefilling) > 1):
                # Prompts stalled mid-prefill: admission just freed KV for them, or partial
                # prompts hold the KV each needs (then pause the last in policy order).
                if self.preemptions == paused:
                    self.preempt(max(self.prefilling, key=lambda s: s.key))
                self._plan()
                return
            self.run = None
            return
        tokens, pairs, ctx, finishing = 0, 0.0, 0.0, 0
        for seq in prefills:
            c = seq.chunk
            tokens += c
            pairs += c * seq.prefilled + c * c / 2
            ctx += seq.prefilled
            finishing += seq.prefilled + c == seq.prompt
        first = self.perf.step_time(
            Batch(tokens, pairs, ctx, n_dec, self.decode_context, n_dec + finishing)
        )
        steps, last = 1, first
        if not prefills and stuck and self.on_step is None:
            steps = self._decode_run_length()
            if steps > 1:
                end_context = self.decode_context + n_dec * (steps - 1)
                last = self.perf.step_time(Batch(0, 0.0, 0.0, n_dec, end_context, n_dec))
        self._runs += 1
        version = self._runs
        self.run = _Run(self.env.now, steps, first, last, prefills, version)
        self.env.at(self.env.now + steps * (first + last) / 2, lambda: self._end(version))

    def _chunk(self, seq: Seq, budget: int) -> int:
        """Prompt tokens of `seq` this step: all of it, or a chunk when chunking is on."""
        remaining = seq.prompt - seq.prefilled
        chunk = min(remaining, budget) if self.limits.chunked_prefill else remaining
        if chunk > budget or self.kv_used + chunk + self.slack > self.capacity:
            return 0
        return chunk

    def _admit(self, budget: int, batch: list[Seq]) -> bool:
        """Admit waiting sequences in policy order; True if the queue cannot move now."""
        now = self.env.now
        while self.waiting and budget > 0:
            seq = self.waiting[0][1]
            if seq.first_token_s is None and now - seq.req.arrival_s > seq.job.tier.patience_s:
                heapq.heappop(self.waiting)
                self.queued_tokens -= seq.prompt - seq.prefilled
                self.on_finish(seq, "abandoned")
                continue
            if self.running >= self.limits.max_num_seqs or not self._fits(seq, budget):
                # Pausing others frees places and KV, not this step's token budget.
                remaining = seq.prompt - seq.prefilled
                over_budget = not self.limits.chunked_prefill and remaining > budget
                if self.policy.preempts and not over_budget and self._make_room(seq):
                    continue
                return True
            if seq.job.tier.preemptible and not self.pacer.allows_one_more():
                return True
            heapq.heappop(self.waiting)
            self.queued_tokens -= seq.prompt - seq.prefilled
            taken = self._use_cache(seq)
            chunk = self._chunk(seq, budget)
            if chunk == 0:  # the cache hit left no room for a chunk: give it back, retry later
                if taken is not None:
                    key, hit = taken
                    self.kv_used -= hit
                    seq.prefilled -= hit
                    seq.cached = 0
                    self._remember(key, hit)
                self._enqueue(seq)
                return True
            seq.chunk = chunk
            self.pacer.count(seq, +1)
            self.prefilling.append(seq)
            batch.append(seq)
            self.kv_used += chunk + self.slack
            budget -= chunk
        return not self.waiting

    def _fits(self, seq: Seq, budget: int) -> bool:
        remaining = seq.prompt - seq.prefilled
        need = min(remaining, budget) if self.limits.chunked_prefill else remaining
        return need <= budget and self.kv_used + need + self.slack <= self.capacity

    def _make_room(self, blocked: Seq) -> bool:
        """Ask the policy for victims among decoding sequences; pause them.

        Sequences mid-prefill are left alone: their chunk is already in this step.
        """
        running = list(self.decoding.values())
        # Without a pause, a place (and its KV) frees when the next decoder finishes.
        wait = math.inf
        if self.finishing:
            n = len(running)
            step = self.perf.step_time(Batch(0, 0.0, 0.0, n, self.decode_context, n))
            wait = (self.finishing[0][0] - self.clock) * step
        jobs = [s.job for s in running]
        victims = self.policy.victims(blocked.job, jobs, self.env.now, wait)
        ids = {v.id for v in victims}
        for seq in running:
            if seq.job.id in ids:
                self.preempt(seq)
        return bool(ids)

    def _decode_run_length(self) -> int:
        """How many pure-decode steps can run before anything but decoding happens."""
        n = len(self.decoding)
        to_finish = self.finishing[0][0] - self.clock if self.finishing else 1
        room = int((self.capacity - self.kv_used) // n) if n else 1
        return max(1, min(to_finish, room))

    def _end(self, version: int) -> None:
        run = self.run
        if run is None or run.version != version:
            return
        now = self.env.now
        self.busy_s += now - run.start
        steps, n_dec = run.steps, len(self.decoding)
        if n_dec or run.prefills:
            share = (now - run.start) / (n_dec + len(run.prefills))
            self.shares += share
            for seq in run.prefills:
                seq.share_s += share
        self.clock += steps
        self.decode_context += n_dec * steps
        self.kv_used += n_dec * steps
        self.generated_tokens += n_dec * steps
        for seq in run.prefills:
            seq.prefilled += seq.chunk
            if seq.prefilled == seq.prompt:
                self.prefilling.remove(seq)
                self._start_decoding(seq, now)
        finishing = self.finishing
        while finishing and finishing[0][0] <= self.clock:
            _, _, seq = heapq.heappop(finishing)
            self._release(seq, now)
            self.on_finish(seq, "ok")
        if self.on_step is not None:
            self.on_step()
        self._plan()

    def _start_decoding(self, seq: Seq, now: float) -> None:
        if seq.first_token_s is None:
            seq.first_token_s = now
        seq.gen += 1
        self.generated_tokens += 1
        seq.d0, seq.ctx0 = self.clock, seq.prompt + 1
        seq.s0 = self.shares
        self.decoding[seq.job.id] = seq
        self.decode_context += seq.ctx0
        self.kv_used += 1
        heapq.heappush(self.finishing, (self.clock + seq.target - seq.gen, seq.job.id, seq))

    def _release(self, seq: Seq, now: float) -> None:
        """Take a decoding sequence out of the batch, freeing its KV."""
        del self.decoding[seq.job.id]
        self.pacer.count(seq, -1)
        progress = self.clock - seq.d0
        seq.gen += progress
        seq.d0 = self.clock
        seq.share_s += self.shares - seq.s0
        context = seq.ctx0 + progress
        self.decode_context -= context
        self.kv_used -= context + self.slack
        seq.done_s = now
        self._remember(seq.req.session, context)

    def abort(self, job_id: int) -> Seq | None:
        """Drop a request wherever it is (its client left), freeing its place and KV."""
        # A step in flight keeps its time; the dropped sequence gets nothing from it, nor a
        # share of its cost (those left in it split that).
        for i, (_, queued) in enumerate(self.waiting):
            if queued.job.id == job_id:
                self.waiting[i] = self.waiting[-1]
                self.waiting.pop()
                heapq.heapify(self.waiting)
                self.queued_tokens -= queued.prompt - queued.prefilled
                return queued
        seq = self.decoding.get(job_id) or next(
            (s for s in self.prefilling if s.job.id == job_id), None
        )
        if seq is None:
            return None
        if job_id in self.decoding:
            self.finishing = [f for f in self.finishing if f[2] is not seq]
            heapq.heapify(self.finishing)
            self._release(seq, self.env.now)
            return seq
        self.pacer.count(seq, -1)
        self.prefilling.remove(seq)
        self.kv_used -= seq.prefilled + self.slack
        run = self.run
        if run is not None and seq in run.prefills:
            run.prefills.remove(seq)  # its chunk was counted in KV when the step was planned
            self.kv_used -= seq.chunk
        return seq

    # -- preemption and prefix cache ------------------------------------------------
    def _preempt_worst(self) -> None:
        running = [*self.prefilling, *self.decoding.values()]
        self.preempt(max(running, key=lambda s: s.key))

    def preempt(self, seq: Seq) -> None:
        """Pause a running sequence; it keeps its output and re-prefills it later."""
        self.pacer.count(seq, -1)
        if seq.job.id in self.decoding:
            del self.decoding[seq.job.id]
            progress = self.clock - seq.d0
            seq.gen += progress
            seq.share_s += self.shares - seq.s0
            context = seq.ctx0 + progress
            self.decode_context -= context
            self.kv_used -= context + self.slack
            self.finishing = [f for f in self.finishing if f[2] is not seq]
            heapq.heapify(self.finishing)
        else:
            context = seq.prefilled
            self.prefilling.remove(seq)
            self.kv_used -= seq.prefilled + self.slack
        seq.prompt = seq.req.input_tokens + seq.gen
        seq.prefilled = 0
        seq.preemptions += 1
        self.preemptions += 1
        # Its blocks go back to the prefix cache: resuming soon re-reads, not recomputes.
        self._remember(("paused", seq.job.id), context)
        self._enqueue(seq)

    def _use_cache(self, seq: Seq) -> tuple[Hashable, int] | None:
        """Skip the prompt tokens the prefix cache holds: a session's earlier context or,
        for a paused sequence, its own context before the pause. Returns what it took."""
        key: Hashable
        if seq.preemptions:
            key, limit = ("paused", seq.job.id), seq.prompt - 1
        elif seq.req.session is not None:
            key, limit = seq.req.session, min(seq.req.prefix_tokens, seq.prompt - 1)
        else:
            return None
        if key not in self.cache:
            return None
        tokens = self.cache.pop(key)
        self.cached_tokens -= tokens
        hit = min(tokens, limit)
        if not seq.preemptions:
            seq.cached = hit  # the client's cached input (a resume is the factory's own)
        seq.prefilled = hit
        self.kv_used += hit
        return key, hit

    def _remember(self, key: Hashable | None, tokens: int) -> None:
        """Keep a context (a session's, or a paused sequence's) in free KV, evicting the
        least recently used."""
        if key is None:
            return
        old = self.cache.pop(key, 0)
        self.cached_tokens += tokens - old
        self.cache[key] = tokens
        free = self.capacity - self.kv_used
        while self.cache and self.cached_tokens > free:
            _, evicted = self.cache.popitem(last=False)
            self.cached_tokens -= evicted
