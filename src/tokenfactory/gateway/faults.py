"""Engine faults: an attempt's timeouts, which failures are the engine's, when to retry.

An engine that is killed, hangs, is slow or answers garbage fails the attempt with an
`EngineError`. Such a fault (no answer, a timeout, a 5xx, a broken stream) takes the
replica out of routing until its health check answers again; an engine's 4xx is the
request's fault and leaves the replica alone. A request whose client has received
nothing yet is retried once on another healthy replica; one that has started streaming
cannot be taken back, so its client gets a clean error and pays for what it received.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any

from tokenfactory.engines.base import Delta, EngineError, Usage

RETRIES = 1  # further attempts, each on another replica, for a request not yet started


@dataclass(frozen=True, slots=True)
class Timeouts:
    """How long an attempt waits for its first token, and then for each next one."""

    first_token_s: float = 60.0
    stall_s: float = 30.0


def is_fault(error: EngineError) -> bool:
    """Whether a failure is the engine's (unreachable, timed out, 5xx, garbage)."""
    return error.status is None or error.status >= 500


def retriable(error: EngineError, delivered: str, retries: int) -> bool:
    """Whether a failed attempt may run again elsewhere: an engine fault, nothing sent."""
    return is_fault(error) and not delivered and retries < RETRIES


class _Watch:
    """The deadline of the token being awaited, and one timer that enforces it.

    A timer per token (anyio's scopes, asyncio.timeout) costs more than the token's own
    handling. This one is armed only when none is pending: on firing it finds the wait
    ended or its deadline moved on, and is armed again for that deadline, so it fires
    about once per timeout, not once per token.
    """

    __slots__ = ("_cancelling", "_loop", "_task", "_timer", "due", "expired")

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._task: asyncio.Task[Any] | None = None
        self._cancelling = 0  # the task's pending cancellations when the wait began
        self._timer: asyncio.TimerHandle | None = None
        self.due: float | None = None  # None while no token is awaited
        self.expired = False  # whether it cancelled the task for a token overdue

    def begin(self, limit: float) -> None:
        """A wait for a token begins, in the current task; it may last `limit` seconds."""
        self._task = asyncio.current_task(self._loop)
        assert self._task is not None
        self._cancelling = self._task.cancelling()
        self.due = due = self._loop.time() + limit
        timer = self._timer
        if timer is None or timer.when() > due:
            if timer is not None:
                timer.cancel()
            self._timer = self._loop.call_at(due, self._fire)

    def overdue(self) -> bool:
        """Whether a CancelledError that ended the wait was this watch's, and its alone."""
        assert self._task is not None
        return self.expired and self._task.uncancel() <= self._cancelling

    def close(self) -> None:
        """Stop watching."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _fire(self) -> None:
        self._timer = None
        if self.due is None or self._task is None:
            return  # no wait now: the next one arms it again
        if self._loop.time() < self.due:
            self._timer = self._loop.call_at(self.due, self._fire)
            return
        self.expired = True
        self._task.cancel()


async def guarded(
    name: str, items: AsyncGenerator[Delta | Usage, None], timeouts: Timeouts
) -> AsyncGenerator[Delta | Usage, None]:
    """An engine's stream that fails with EngineError when a token is overdue."""
    started = False
    watch = _Watch()
    try:
        async with contextlib.aclosing(items):  # closing this stream closes the engine's now
            while True:
                limit = timeouts.stall_s if started else timeouts.first_token_s
                watch.begin(limit)
                try:
                    item = await anext(items)
                except StopAsyncIteration:
                    return
                except asyncio.CancelledError:
                    if not watch.overdue():
                        raise
                    what = "next token" if started else "first token"
                    message = f"{name}: no {what} within {limit:g}s"
                    raise EngineError(message, started=started) from None
                finally:
                    watch.due = None
                started = started or isinstance(item, Delta)
                yield item
    finally:
        watch.close()
