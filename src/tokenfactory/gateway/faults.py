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


async def guarded(
    name: str, items: AsyncGenerator[Delta | Usage, None], timeouts: Timeouts
) -> AsyncGenerator[Delta | Usage, None]:
    """An engine's stream that fails with EngineError when a token is overdue."""
    started = False
    async with contextlib.aclosing(items):  # closing this stream closes the engine's now
        while True:
            limit = timeouts.stall_s if started else timeouts.first_token_s
            try:
                # asyncio's own timeout: a timer per token, where anyio's scope cost
                # several times the token's own handling.
                async with asyncio.timeout(limit):
                    item = await anext(items)
            except StopAsyncIteration:
                return
            except TimeoutError:
                what = "next token" if started else "first token"
                message = f"{name}: no {what} within {limit:g}s"
                raise EngineError(message, started=started) from None
            started = started or isinstance(item, Delta)
            yield item
