"""Token rate limits per key: a token bucket refilled continuously, in this process.

One gateway runs on one event loop, so a check-and-take with no await in between cannot
race. Several gateways share their buckets through Redis instead (`redis_buckets.py`);
both answer to `RateLimiter`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol


class RateLimiter(Protocol):
    """Takes tokens from a key's bucket of `per_minute` tokens."""

    async def take(self, key_id: int, per_minute: int, tokens: int) -> float:
        """Take `tokens` if the bucket holds them (0.0), else the seconds to wait."""
        ...

    async def close(self) -> None:
        """Let go of any connection."""
        ...


@dataclass
class _Bucket:
    level: float
    at: float


@dataclass
class TokenBuckets:
    """One bucket per key, holding up to a minute's worth of tokens."""

    clock: Callable[[], float] = time.monotonic
    _buckets: dict[int, _Bucket] = field(default_factory=dict)

    async def take(self, key_id: int, per_minute: int, tokens: int) -> float:
        """Take `tokens` if the bucket holds them (0.0), else the seconds to wait."""
        return self.take_at(key_id, per_minute, tokens, self.clock())

    def take_at(self, key_id: int, per_minute: int, tokens: int, now: float) -> float:
        """`take` at the time `now` (seconds on any steady clock)."""
        rate = per_minute / 60.0
        bucket = self._buckets.setdefault(key_id, _Bucket(float(per_minute), now))
        bucket.level = min(float(per_minute), bucket.level + (now - bucket.at) * rate)
        bucket.at = now
        need = min(tokens, per_minute)  # a request larger than a minute's worth waits a full one
        if bucket.level >= need:
            bucket.level -= tokens
            return 0.0
        return (need - bucket.level) / rate

    async def close(self) -> None:
        """Nothing to let go of."""
