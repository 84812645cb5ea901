"""Drive a workload against an endpoint in real time: open-loop arrivals on schedule,
closed loops (concurrency, chat sessions, agent loops) sending each next step when the
last one ends. Bounded by the workload's end, --duration, or a run of failures."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from tokenfactory.bench.client import Endpoint, send
from tokenfactory.bench.prompts import Conversations
from tokenfactory.bench.sample import OK, RATE_LIMITED, Sample
from tokenfactory.workload import Request, Workload

# Consecutive failures (429 aside) after which the endpoint is taken to be down.
STOP_AFTER_FAILURES = 20


@dataclass(frozen=True, slots=True)
class Bounds:
    """When a run stops early: after `duration_s`, or after so many failures in a row."""

    duration_s: float | None = None
    stop_after_failures: int = STOP_AFTER_FAILURES


@dataclass(slots=True)
class BenchRun:
    """Every sample of a run, its length, and why it stopped."""

    samples: list[Sample]
    duration_s: float
    stopped: str  # "done", "duration", "failures" or "interrupted"


async def probe(endpoint: Endpoint) -> str | None:
    """Why the endpoint cannot be reached (connection refused, timed out), or None."""
    async with endpoint.client() as client:
        try:
            await client.get(endpoint.url + "/models")
        except httpx.TransportError as e:
            return f"{endpoint.url} is unreachable: {type(e).__name__}: {e}"
    return None


class _Run:
    def __init__(
        self,
        workload: Workload,
        endpoint: Endpoint,
        bounds: Bounds,
        on_sample: Callable[[Sample], None],
    ) -> None:
        self.workload, self.endpoint, self.bounds = workload, endpoint, bounds
        self.on_sample = on_sample
        self.loop = asyncio.get_running_loop()
        self.t0 = self.loop.time()
        self.samples: list[Sample] = []
        self.tasks: set[asyncio.Task[None]] = set()
        self.conversations = Conversations()
        self.failures = 0
        self.stop = asyncio.Event()
        self.stopped = "done"

    def now(self) -> float:
        return self.loop.time() - self.t0

    def launch(self, r: Request, client: httpx.AsyncClient) -> None:
        task = self.loop.create_task(self.one(r, client))
        self.tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        if not self.tasks:
            self.stop.set()

    async def one(self, r: Request, client: httpx.AsyncClient) -> None:
        delay = r.arrival_s - self.now()
        if delay > 0:
            await asyncio.sleep(delay)
        messages = self.conversations.messages(r)
        start = self.now()
        try:
            s = await send(client, self.endpoint, r, messages, self.now)
        except asyncio.CancelledError:  # in flight when the run was cut (--duration, Ctrl-C)
            left = Sample(
                r.id, r.kind, r.tier, r.session, r.arrival_s, start, r.input_tokens, r.output_tokens
            )
            self.record(left)
            raise
        self.record(s)
        self.failures = 0 if s.status in (OK, RATE_LIMITED) else self.failures + 1
        if self.failures >= self.bounds.stop_after_failures:
            self.stopped = "failures"
            self.stop.set()
            return
        # The step's measured end is the loop's "now": the next one starts from there.
        nxt = self.workload.follow_up(r, s.end_s if s.end_s is not None else self.now(), s.ok)
        if nxt is None or self.stop.is_set():
            self.conversations.end(r.session)
        else:
            self.launch(nxt, client)

    def record(self, s: Sample) -> None:
        self.samples.append(s)
        self.on_sample(s)

    async def run(self) -> BenchRun:
        async with self.endpoint.client() as client:
            for r in self.workload.initial():
                self.launch(r, client)
            if not self.tasks:
                self.stop.set()
            try:
                await asyncio.wait_for(self.stop.wait(), self.bounds.duration_s)
            except TimeoutError:
                self.stopped = "duration"
            except asyncio.CancelledError:
                # Ctrl-C (asyncio.run cancels the run): stop, and report what was measured.
                self.stopped = "interrupted"
            self.stop.set()  # no follow-up is launched from here on
            duration = self.now()
            for task in list(self.tasks):
                task.cancel()
            await asyncio.gather(*self.tasks, return_exceptions=True)
        return BenchRun(self.samples, duration, self.stopped)


async def run_bench(
    workload: Workload,
    endpoint: Endpoint,
    bounds: Bounds,
    on_sample: Callable[[Sample], None] = lambda s: None,
) -> BenchRun:
    """Send the workload's requests to the endpoint as it says, and measure each one."""
    return await _Run(workload, endpoint, bounds, on_sample).run()
