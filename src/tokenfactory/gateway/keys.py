"""Key lookups with a short memory, so a busy key is not read from the ledger per request.

A revoked key or a changed budget is seen within `TTL_S`; a budget is still enforced
exactly, by the ledger's atomic `charge`, whatever the cache holds.
"""

from __future__ import annotations

import time

import anyio

from tokenfactory.ledger import KeyRecord, Ledger, hash_secret

TTL_S = 2.0


class KeyCache:
    """find_key, remembered for TTL_S seconds by the secret's hash (never the secret)."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self._seen: dict[str, tuple[float, KeyRecord | None]] = {}

    async def find(self, secret: str) -> KeyRecord | None:
        """The key this secret belongs to, or None."""
        digest = hash_secret(secret)
        now = time.monotonic()
        hit = self._seen.get(digest)
        if hit is not None and now - hit[0] < TTL_S:
            return hit[1]
        key = await anyio.to_thread.run_sync(self.ledger.find_key, secret)
        if len(self._seen) > 10_000:  # bounded: an attacker's random keys cannot grow it
            self._seen.clear()
        self._seen[digest] = (now, key)
        return key
