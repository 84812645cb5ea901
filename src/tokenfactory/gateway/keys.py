"""Key lookups with a short memory, so a busy key is not read from the ledger per request.

A revoked key or a changed budget is seen within `TTL_S`; a budget is still enforced
exactly, by the ledger's atomic `charge`, whatever the cache holds. The requests that
find a key's entry stale together (every client of a busy key, each `TTL_S`) wait for
one read of it, not one each.
"""

from __future__ import annotations

import asyncio
import time

import anyio

from tokenfactory.ledger import KeyRecord, Ledger, hash_secret

TTL_S = 2.0


class KeyCache:
    """find_key, remembered for TTL_S seconds by the secret's hash (never the secret)."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self._seen: dict[str, tuple[float, KeyRecord | None]] = {}
        self._reading: dict[str, asyncio.Task[KeyRecord | None]] = {}

    async def find(self, secret: str) -> KeyRecord | None:
        """The key this secret belongs to, or None."""
        digest = hash_secret(secret)
        hit = self._seen.get(digest)
        if hit is not None and time.monotonic() - hit[0] < TTL_S:
            return hit[1]
        reading = self._reading.get(digest)
        if reading is None:
            reading = self._reading[digest] = asyncio.create_task(self._read(secret, digest))
        # Shielded: a client that leaves does not end the read the others wait for.
        return await asyncio.shield(reading)

    async def _read(self, secret: str, digest: str) -> KeyRecord | None:
        try:
            now = time.monotonic()
            key = await anyio.to_thread.run_sync(self.ledger.find_key, secret)
            if len(self._seen) > 10_000:  # bounded: an attacker's random keys cannot grow it
                self._seen.clear()
            self._seen[digest] = (now, key)
            return key
        finally:
            del self._reading[digest]
