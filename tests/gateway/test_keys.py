"""The key cache reads a key once however many requests find its entry stale together."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import anyio
import pytest

from tokenfactory.gateway import keys
from tokenfactory.gateway.keys import KeyCache
from tokenfactory.ledger import KeyRecord, Ledger


class CountingLedger(Ledger):
    """A real ledger that counts its key reads, each of which says it has begun and then
    waits until the test lets reads go (once let go, they all go)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.reads = 0
        self.begun, self.go = threading.Event(), threading.Event()

    def find_key(self, secret: str) -> KeyRecord | None:
        self.reads += 1
        self.begun.set()
        self.go.wait()
        return super().find_key(secret)


def test_requests_that_miss_together_share_one_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger = CountingLedger(f"sqlite:///{tmp_path / 'ledger.db'}")
    ledger.migrate()
    _, secret = ledger.create_key("acme")
    cache = KeyCache(ledger)

    async def burst() -> list[KeyRecord | None]:
        ledger.begun.clear()
        finds = [asyncio.create_task(cache.find(secret)) for _ in range(16)]
        # The read is begun by the first find, as a task that runs after every find
        # created before it: once it has begun, all sixteen wait for it.
        assert await anyio.to_thread.run_sync(ledger.begun.wait, 30)
        finds[0].cancel()  # a client that leaves ends no one else's read
        ledger.go.set()
        return await asyncio.gather(*finds[1:])

    try:
        found = asyncio.run(burst())
        assert ledger.reads == 1 and all(k is not None and k.tenant == "acme" for k in found)
        assert asyncio.run(cache.find(secret)) == found[0] and ledger.reads == 1  # remembered
        monkeypatch.setattr(keys, "TTL_S", 0.0)  # every entry stale from now on
        assert asyncio.run(burst())[0] == found[0] and ledger.reads == 2
        assert asyncio.run(cache.find("tf-unknown")) is None and ledger.reads == 3
    finally:
        ledger.close()
