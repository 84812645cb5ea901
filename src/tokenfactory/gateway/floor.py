"""One request's life on the floor: queue, run on an engine, pause and resume, measure.

`Run.stream()` is an async generator of text pieces, one per token, a tuple of them for
each burst the engine sent (engines/base.py's Delta); it queues the request through the
dispatcher, streams from the engine, and when the dispatcher asks it to pause (a paying
request needs its place) stops after the burst in hand, gives the place back and queues
again to continue from what it already generated. Whatever happens, `run.result` ends up
describing what the client actually received, for the meter.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field, replace

import anyio

from tokenfactory.engines.base import EngineError, EngineRequest, Usage
from tokenfactory.errors import RateLimited
from tokenfactory.gateway.dispatch import Dispatcher, Lease
from tokenfactory.gateway.faults import guarded, is_fault, retriable
from tokenfactory.sched import Job

OK, CANCELLED, RESUMED, ENGINE_ERROR = "ok", "client_cancelled", "preempted_resumed", "engine_error"


@dataclass
class Result:
    """What a request got, for billing: tokens, timings, where it ran, how it ended."""

    outcome: str = OK
    text: str = ""
    finish_reason: str = "stop"
    prompt_tokens: int | None = None
    cached_tokens: int = 0
    output_tokens: int = 0
    replica: str = ""  # the last replica it ran on
    queued_s: float = 0.0
    ttft_s: float | None = None
    engine_s: float = 0.0  # seconds it held a place on a replica, over all attempts
    # Its share of those seconds: each second split evenly among the requests the replica
    # ran then (a lone request's share is all of it).
    share_s: float = 0.0
    preemptions: int = 0
    retries: int = 0  # attempts that failed on an engine before any token was sent
    error: str | None = None


@dataclass
class Run:
    """A request's run through the floor."""

    job: Job
    request: EngineRequest
    dispatcher: Dispatcher
    session: str | None = None
    result: Result = field(default_factory=Result)
    arrived: float = field(default_factory=time.monotonic)
    # Whether text generated so far can be thrown away (a whole response: the client
    # has received none of it), so an engine fault may restart it elsewhere.
    restartable: bool = False

    async def stream(self) -> AsyncGenerator[tuple[str, ...], None]:
        """Generated text as it comes, one piece per token, the pieces that arrived
        together at once; ends when the request is done or fails."""
        r = self.result
        wanted = self.request.max_tokens
        failed: frozenset[int] = frozenset()
        try:
            while True:
                remaining = None if wanted is None else wanted - r.output_tokens
                if remaining is not None and remaining <= 0:
                    return  # paused after its last token (engines may overrun on UTF-8)
                queued_at = time.monotonic()
                lease = await self._acquire(failed)
                r.queued_s += time.monotonic() - queued_at
                r.replica = lease.replica.name
                # Most requests run once, as asked: replace() costs more than a check.
                attempt = (
                    self.request
                    if remaining == wanted and r.text == self.request.continuation
                    else replace(self.request, continuation=r.text, max_tokens=remaining)
                )
                try:
                    # Closed here, not by the garbage collector: a stream closed while it
                    # waits at `yield` must count the attempt's tokens before it is billed.
                    async with contextlib.aclosing(self._attempt(lease, attempt)) as bursts:
                        async for pieces in bursts:
                            yield pieces
                except EngineError as e:
                    failed |= {lease.replica.index}
                    delivered = "" if self.restartable else r.text
                    if not retriable(e, delivered, r.retries) or not (
                        self.dispatcher.healthy_elsewhere(failed)
                    ):
                        raise
                    self._restart(e)
                    continue
                if not lease.paused:
                    return
                r.preemptions += 1
                r.outcome = RESUMED
        except (GeneratorExit, anyio.get_cancelled_exc_class()):
            r.outcome = CANCELLED  # the client left (or the handler was cancelled)
            raise

    def _restart(self, error: EngineError) -> None:
        """Start again from nothing: the client has received nothing, so it pays nothing
        for what came before (its time counts as waiting, the replicas' as idle cost)."""
        r = self.result
        r.queued_s, r.engine_s = r.queued_s + r.engine_s, 0.0
        r.text, r.output_tokens, r.prompt_tokens, r.cached_tokens = "", 0, None, 0
        r.ttft_s, r.finish_reason, r.outcome = None, "stop", OK
        r.retries += 1
        r.error = f"retried on another replica after: {error}"

    async def _acquire(self, failed: frozenset[int]) -> Lease:
        """A place; preemptible work not yet started waits no longer than its patience."""
        job = self.job
        if not job.tier.preemptible or self.result.text or failed:
            return await self.dispatcher.acquire(job, self.session, failed)
        patience = job.tier.patience_s - (time.monotonic() - self.arrived)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(patience):  # asyncio's: cheaper than anyio's scope
                return await self.dispatcher.acquire(job, self.session, failed)
        raise RateLimited(
            f"the {job.tier.name} tier could not start this request within its "
            f"patience of {job.tier.patience_s:g}s; retry later",
            retry_after_s=self.dispatcher.expected_wait_s(),
        )

    async def _attempt(
        self, lease: Lease, request: EngineRequest
    ) -> AsyncGenerator[tuple[str, ...], None]:
        """One try on one replica; the place is given back however it ends."""
        r, engine = self.result, lease.replica.engine
        started = time.monotonic()
        text, pieces = "", 0
        usage: Usage | None = None
        stream = guarded(engine.name, engine.stream(request), lease.replica.timeouts)
        try:
            async for item in stream:
                if isinstance(item, Usage):
                    usage = item
                    continue
                if item.finish_reason:
                    r.finish_reason = item.finish_reason
                burst = item.pieces
                if "" in burst:  # an empty piece is sent to no one
                    burst = tuple(piece for piece in burst if piece)
                if burst:
                    if r.ttft_s is None:
                        r.ttft_s = time.monotonic() - self.arrived
                    joined = burst[0] if len(burst) == 1 else "".join(burst)
                    text += joined
                    r.text += joined
                    pieces += len(burst)
                    yield burst
                # A paying request wants this place: stop here, keep what was generated.
                if lease.preempt.is_set() and not item.finish_reason:
                    lease.paused = True
                    break
        except EngineError as e:
            r.outcome, r.error = ENGINE_ERROR, str(e)
            if is_fault(e):
                self.dispatcher.mark(lease.replica, healthy=False)
            raise
        finally:
            # The place goes back first, synchronously: nothing below may be skipped by a
            # cancellation, and the awaits are shielded from the one that brought us here.
            r.engine_s += time.monotonic() - started
            self.dispatcher.release(lease)
            r.share_s += lease.share_s
            with anyio.CancelScope(shield=True):
                await stream.aclose()
                await self._count(lease, usage, text, pieces)

    async def _count(self, lease: Lease, usage: Usage | None, text: str, pieces: int) -> None:
        """Add an attempt's tokens: the engine's usage, else its tokenizer, else pieces."""
        r = self.result
        if usage is not None:
            r.output_tokens += usage.completion_tokens
            if r.prompt_tokens is None:
                r.prompt_tokens, r.cached_tokens = usage.prompt_tokens, usage.cached_tokens
            return
        if not text:
            return
        try:
            r.output_tokens += await lease.replica.engine.count_tokens(text)
        except EngineError:
            r.output_tokens += pieces  # one streamed piece is one token in these engines
