"""Queue limits: how many requests of each tier may wait for a place on the floor.

Requests that find no place wait in the dispatcher's queue, each holding its body and a
connection. A burst far above capacity would grow that queue without end; a limit per
tier keeps memory bounded and tells clients early, with 429 and Retry-After, instead of
letting them time out. Batch requests are paced by the batch runner and are not limited
here.
"""

from __future__ import annotations

from tokenfactory.config.factory import QueueLimitsSpec
from tokenfactory.errors import RateLimited
from tokenfactory.gateway.dispatch import Dispatcher


def queue_limit(limits: QueueLimitsSpec, tier: str) -> int | None:
    """The most requests of `tier` that may wait (None: not limited here)."""
    value = getattr(limits, tier, None)
    return value if isinstance(value, int) else None


def check_queue(limits: QueueLimitsSpec, tier: str, dispatcher: Dispatcher) -> None:
    """Raise RateLimited when `tier`'s queue is full."""
    limit = queue_limit(limits, tier)
    if limit is None or dispatcher.queued_by_tier().get(tier, 0) < limit:
        return
    if any(r.healthy and r.free > 0 for r in dispatcher.replicas):
        return  # it will not wait (a limit of 0 still lets it take a free place)
    raise RateLimited(
        f"the {tier} tier's queue is full ({limit} requests waiting); retry later",
        retry_after_s=dispatcher.expected_wait_s(),
    )
