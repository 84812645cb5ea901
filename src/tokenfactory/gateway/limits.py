"""Token rate limits per key: a token bucket refilled continuously.

The gateway runs on one event loop, so a check-and-take with no await in between cannot
race. (Several gateways sharing limits need a shared store; see issue 7.)
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class _Bucket:
    level: float
    at: float


class TokenBuckets:
    """One bucket per key, holding up to a minute's worth of tokens."""

    def __init__(self) -> None:
        self._buckets: dict[int, _Bucket] = {}

    def take(self, key_id: int, per_minute: int, tokens: int, now: float) -> float:
        """Take `tokens` if the bucket holds them (0.0), else the seconds to wait."""
        rate = per_minute / 60.0
        bucket = self._buckets.setdefault(key_id, _Bucket(float(per_minute), now))
        bucket.level = min(float(per_minute), bucket.level + (now - bucket.at) * rate)
        bucket.at = now
        need = min(tokens, per_minute)  # a request larger than a minute's worth waits a full one
        if bucket.level >= need:
            bucket.level -= tokens
            return 0.0
        return (need - bucket.level) / rate

    def give_back(self, key_id: int, tokens: int) -> None:
        """Return tokens estimated but not used (the request produced fewer)."""
        bucket = self._buckets.get(key_id)
        if bucket is not None:
            bucket.level += tokens
