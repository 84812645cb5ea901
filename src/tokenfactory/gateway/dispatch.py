"""The floor's scheduler: who runs next, on which replica, and who is paused for whom.

Requests wait in one queue ordered by the same `sched` policy the simulator runs. A
replica runs at most `max_concurrency` requests at once; when a place frees, the best
waiting request takes it on the replica the router picks. Under a preempting policy a
paying request that finds no place asks the policy for a victim among preemptible
requests running on replicas that can resume them: the victim is told to pause, gives
its place back, and queues again with what it has generated. A pause is priced at the
victim's replica: its context recomputed on resume at the replica's cost per second.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from tokenfactory.engines.base import Engine, Load
from tokenfactory.gateway.faults import Timeouts
from tokenfactory.perf.model import PerfModel
from tokenfactory.sched import Job, Policy, ReplicaLoad, route

# Weight of the newest request in the running mean of service time (for wait estimates).
SERVICE_EWMA = 0.05
# What a request the engine runs for someone else weighs in routing, in prompt tokens.
FOREIGN_REQUEST_TOKENS = 512
# Sessions (`user`) remembered for affinity; past this the memory starts afresh.
MAX_HOMES = 100_000


@dataclass(eq=False)
class ReplicaSlot:
    """A replica as the floor schedules it."""

    index: int
    name: str
    engine: Engine
    max_concurrency: int
    running: dict[int, Lease] = field(default_factory=dict)
    healthy: bool = True
    engine_load: Load | None = None  # the engine's own signals (vLLM's /metrics), if any
    timeouts: Timeouts = field(default_factory=Timeouts)
    # The integral of 1 / running over time while busy: a request's share of the
    # replica's time is its rise while the request runs (cost attribution's work).
    shares_s: float = 0.0
    counted_at: float = 0.0
    # What its time costs, and its performance model where it has one: what prices a pause.
    usd_per_s: float = 0.0
    perf: PerfModel | None = None

    def count(self, now: float) -> float:
        """Bring `shares_s` up to `now` (call it before `running` changes); returns it."""
        if self.running:
            self.shares_s += (now - self.counted_at) / len(self.running)
        self.counted_at = now
        return self.shares_s

    def priced(self, job: Job) -> Job:
        """`job` with what pausing it here would cost (unchanged where the replica has no
        performance model, or the job cannot be paused)."""
        if self.perf is None or not job.tier.preemptible:
            return job
        resume_s = self.perf.work_s(job.paused_context, 0, 0)
        return replace(job, pause_cost=resume_s * self.usd_per_s)

    @property
    def free(self) -> int:
        """Places left for one more request."""
        return self.max_concurrency - len(self.running)

    def load(self) -> ReplicaLoad:
        """The router's view: our requests by their prompts, plus what the engine queues
        from elsewhere (other gateways or clients share an engine)."""
        tokens = sum(lease.job.input_tokens + 64 for lease in self.running.values())
        if self.engine_load is not None:
            others = max(0, self.engine_load.running + self.engine_load.waiting - len(self.running))
            tokens += others * FOREIGN_REQUEST_TOKENS
        return ReplicaLoad(self.index, tokens, self.healthy)


@dataclass(eq=False)
class Lease:
    """A place on a replica, held by one request until it ends or is paused."""

    job: Job
    replica: ReplicaSlot
    started: float
    shares_from: float = 0.0  # the replica's `shares_s` when the place was taken
    share_s: float = 0.0  # once released: its share of the replica's time while it ran
    preempt: asyncio.Event = field(default_factory=asyncio.Event)
    paused: bool = False  # the holder stopped because of `preempt` and will queue again


@dataclass(eq=False)
class _Waiter:
    job: Job
    session: str | None
    future: asyncio.Future[Lease]
    avoid: frozenset[int] = frozenset()  # replicas this request already failed on


class Dispatcher:
    """Queue, admission, placement and preemption for the whole floor."""

    def __init__(
        self,
        replicas: list[ReplicaSlot],
        policy: Policy,
        router: str,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.replicas = replicas
        self.policy = policy
        self.router = router
        self.clock = clock
        self._waiting: list[tuple[tuple[float, float, int], int, _Waiter]] = []
        self._order = itertools.count()
        self._routed = 0
        self._homes: dict[str, int] = {}
        self.mean_service_s = 1.0
        self.preemptions = 0

    # -- signals ------------------------------------------------------------------
    @property
    def queued(self) -> int:
        """Requests waiting for a place."""
        return sum(1 for *_, w in self._waiting if not w.future.done())

    def queued_by_tier(self) -> dict[str, int]:
        """Waiting requests per tier, for metrics."""
        out: dict[str, int] = {}
        for *_, w in self._waiting:
            if not w.future.done():
                out[w.job.tier.name] = out.get(w.job.tier.name, 0) + 1
        return out

    def expected_wait_s(self) -> float:
        """Seconds a request queued now would wait: the queue ahead over the places."""
        places = sum(r.max_concurrency for r in self.replicas if r.healthy) or 1
        return self.queued / places * self.mean_service_s

    def place_wait_s(self) -> float:
        """Seconds until some running request ends and frees a place, on average."""
        running = sum(len(r.running) for r in self.replicas if r.healthy)
        return self.mean_service_s / running if running else 0.0

    def admit(self, job: Job) -> bool:
        """The policy's word on a new request (False: refuse it with 429)."""
        return self.policy.admit(job, self.expected_wait_s())

    # -- places -------------------------------------------------------------------
    async def acquire(
        self, job: Job, session: str | None = None, avoid: frozenset[int] = frozenset()
    ) -> Lease:
        """Wait for a place on a replica, in policy order; may pause cheaper work.

        `avoid`: replicas to pass over while a healthy one outside them exists (a retry).
        """
        loop = asyncio.get_running_loop()
        waiter = _Waiter(job, session, loop.create_future(), avoid)
        key = self.policy.key(job, self.clock())
        heapq.heappush(self._waiting, (key, next(self._order), waiter))
        self._wake()
        if not waiter.future.done() and self.policy.preempts:
            self._pause_for(job)
        try:
            return await waiter.future
        except asyncio.CancelledError:
            # The client left while queued; if a place was already granted, return it.
            if waiter.future.done() and not waiter.future.cancelled():
                self.release(waiter.future.result(), served=False)
            raise

    def release(self, lease: Lease, served: bool = True) -> None:
        """Give a place back; the next waiting request takes it."""
        if lease.job.id not in lease.replica.running:
            return
        now = self.clock()
        lease.share_s = lease.replica.count(now) - lease.shares_from
        del lease.replica.running[lease.job.id]
        if served:
            elapsed = now - lease.started
            self.mean_service_s += SERVICE_EWMA * (elapsed - self.mean_service_s)
        self._wake()

    def healthy_elsewhere(self, avoid: frozenset[int]) -> bool:
        """Whether a healthy replica outside `avoid` exists (busy or not)."""
        return any(r.healthy and r.index not in avoid for r in self.replicas)

    def mark(self, replica: ReplicaSlot, healthy: bool) -> None:
        """Take a replica out of routing (or put it back) and re-place waiters."""
        replica.healthy = healthy
        self._wake()

    def _wake(self) -> None:
        while self._waiting:
            waiter = self._waiting[0][2]
            if waiter.future.done():  # cancelled while queued
                heapq.heappop(self._waiting)
                continue
            replica = self._place(waiter)
            if replica is None:
                return
            heapq.heappop(self._waiting)
            now = self.clock()
            lease = Lease(waiter.job, replica, now, shares_from=replica.count(now))
            replica.running[waiter.job.id] = lease
            waiter.future.set_result(lease)

    def _place(self, waiter: _Waiter) -> ReplicaSlot | None:
        # A retry keeps off the replicas it failed on, unless no other one is left.
        avoid = waiter.avoid if self.healthy_elsewhere(waiter.avoid) else frozenset()
        open_ = [r for r in self.replicas if r.free > 0 and r.healthy and r.index not in avoid]
        if not open_:
            return None
        home = self._homes.get(waiter.session) if waiter.session else None
        index = route(self.router, [r.load() for r in open_], self._routed, home)
        self._routed += 1
        chosen = next(r for r in open_ if r.index == index)
        if waiter.session:
            if len(self._homes) >= MAX_HOMES:  # bounded: clients choose `user` freely
                self._homes.clear()
            self._homes[waiter.session] = chosen.index
        return chosen

    def _pause_for(self, job: Job) -> None:
        """Ask the policy which running request to pause so `job` can start."""
        running = [
            lease
            for r in self.replicas
            if r.healthy and r.engine.supports_continuation
            for lease in r.running.values()
            if not lease.preempt.is_set()
        ]
        jobs = [lease.replica.priced(lease.job) for lease in running]
        victims = self.policy.victims(job, jobs, self.clock(), self.place_wait_s())
        chosen = {v.id for v in victims}
        for lease in running:
            if lease.job.id in chosen:
                lease.preempt.set()
                self.preemptions += 1
