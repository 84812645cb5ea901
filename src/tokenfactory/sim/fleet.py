"""The simulated fleet: arrivals from the workload, routing, admission, outcomes.

Each request ends as one `Outcome`: served (ok), refused at the door (the policy said
no), or abandoned (its client's patience ran out before a first token), carrying its share
of the steps it was in whatever became of it. Closed loops (chat sessions, agents) hear of
every end and may send their next request.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import partial

from tokenfactory.perf.model import PerfModel
from tokenfactory.sched import Job, Policy, ReplicaLoad, TierRule, route
from tokenfactory.sim.clock import Environment
from tokenfactory.sim.replica import EngineLimits, Replica, Seq
from tokenfactory.workload import Request, Workload

OK, REFUSED, ABANDONED = "ok", "refused", "abandoned"


@dataclass(frozen=True, slots=True)
class TierPrice:
    """Dollars per token of each kind, for one tier."""

    input: float
    cached_input: float
    output: float


@dataclass(slots=True)
class Outcome:
    """How one request ended, with its timings and tokens."""

    req: Request
    status: str
    replica: int
    end_s: float
    first_token_s: float | None = None
    cached_tokens: int = 0
    output_tokens: int = 0
    preemptions: int = 0
    share_s: float = 0.0  # replica seconds: each step it was in, over the sequences in it


class Fleet:
    """Replicas behind a router, fed by a workload, under one policy."""

    def __init__(
        self,
        env: Environment,
        perf: PerfModel,
        limits: EngineLimits,
        replicas: int,
        workload: Workload,
        tiers: dict[str, TierRule],
        prices: dict[str, TierPrice],
        policy: Policy,
        router: str,
        cost_per_s: float = 0.0,
    ) -> None:
        self.env = env
        self.replicas = [
            Replica(i, env, perf, limits, policy, partial(self.finished, i))
            for i in range(replicas)
        ]
        self.workload = workload
        self.tiers = tiers
        self.prices = prices
        self.policy = policy
        self.router = router
        self.cost_per_s = cost_per_s  # of one replica's time: what prices a pause
        self.outcomes: list[Outcome] = []
        self._routed = 0
        self._home: dict[int, int] = {}  # session -> replica that last served it
        self._pending: list[Request] = []
        self._next = 0
        self._mean_service_s = 1.0

    def start(self) -> None:
        """Schedule the workload's first arrivals."""
        self._pending = self.workload.initial()
        self._schedule_next()

    def _schedule_next(self) -> None:
        if self._next < len(self._pending):
            req = self._pending[self._next]
            self._next += 1
            self.env.at(req.arrival_s, lambda: self._arrive(req, chain=True))

    def _arrive(self, req: Request, chain: bool = False) -> None:
        if chain:
            self._schedule_next()
        tier = self.tiers[req.tier]
        price = self.prices[req.tier]
        replica = self._choose(req)
        work = replica.perf.work_s(req.input_tokens, 0, req.output_tokens)
        value = req.input_tokens * price.input + req.output_tokens * price.output
        job = Job(req.id, tier, req.arrival_s, req.input_tokens, req.output_tokens, value, work)
        if tier.preemptible:
            resume_s = replica.perf.work_s(job.paused_context, 0, 0)
            job = replace(job, pause_cost=resume_s * self.cost_per_s)
        ahead = len(replica.waiting) / replica.limits.max_num_seqs
        if not self.policy.admit(job, ahead * self._mean_service_s):
            self._record(Outcome(req, REFUSED, replica.index, self.env.now))
            return
        replica.submit(req, job)

    def _choose(self, req: Request) -> Replica:
        loads = [ReplicaLoad(r.index, r.outstanding_tokens()) for r in self.replicas]
        home = self._home.get(req.session) if req.session is not None else None
        index = route(self.router, loads, self._routed, home, req.prefix_tokens)
        self._routed += 1
        if req.session is not None:
            self._home[req.session] = index
        return self.replicas[index]

    def finished(self, index: int, seq: Seq, status: str) -> None:
        """A replica reports the end of a sequence."""
        now, replica = self.env.now, self.replicas[index]
        outcome = Outcome(
            seq.req,
            status,
            replica.index,
            now,
            seq.first_token_s,
            seq.cached,
            seq.gen if status == OK else 0,
            seq.preemptions,
            seq.share_s,
        )
        if status == OK:
            self._mean_service_s += 0.01 * (now - seq.req.arrival_s - self._mean_service_s)
        self._record(outcome)

    def _record(self, outcome: Outcome) -> None:
        self.outcomes.append(outcome)
        follow = self.workload.follow_up(outcome.req, self.env.now, outcome.status == OK)
        if follow is not None:
            self.env.at(follow.arrival_s, lambda: self._arrive(follow))
