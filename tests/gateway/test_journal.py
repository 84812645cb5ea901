"""Write-ahead metering of streams: the ledger covers every token before it is sent, by at
most one credit more, and renewals of many streams share transactions."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import anyio
from floor_helpers import interrupted_event

from tokenfactory.gateway.journal import CREDIT, Journal, Tab
from tokenfactory.ledger import Ledger, UsageEvent
from tokenfactory.ledger.open_requests import OpenRequests

STREAMS = 40
TOKENS = 100


class CountedRequests(OpenRequests):
    """The real journal book, counting its transactions."""

    advances = 0

    def advance(self, events: Sequence[UsageEvent]) -> None:
        """Write as usual and count one transaction."""
        self.advances += 1
        super().advance(events)


def covered(book: OpenRequests) -> dict[str, int]:
    return {r.event.request_id: r.event.output_tokens for r in book.running()}


def test_every_token_is_covered_before_it_is_sent_and_streams_share_commits(
    tmp_path: Path,
) -> None:
    ledger = Ledger.sqlite(tmp_path / "ledger.db")
    ledger.migrate()
    key, _ = ledger.create_key("acme")
    book = CountedRequests(ledger)
    breaches: list[tuple[str, int, int]] = []

    async def stream(journal: Journal, rid: str, limit: int | None) -> int:
        tab = Tab(journal, lambda n: interrupted_event(rid, key.id, n), limit)
        for _ in range(TOKENS):
            await tab.send()
            # What a kill now would bill, read back from the database.
            held = (await anyio.to_thread.run_sync(covered, book)).get(rid, 0)
            if not tab.sent <= held <= tab.sent + CREDIT or (limit and held > limit):
                breaches.append((rid, tab.sent, held))
        await tab.settle()
        return tab.covered

    async def main() -> list[int]:
        journal = Journal(book)
        limits = [None if i % 2 else TOKENS for i in range(STREAMS)]
        return await asyncio.gather(
            *(stream(journal, f"r{i}", lim) for i, lim in enumerate(limits))
        )

    ends = asyncio.run(main())
    assert breaches == []
    # A limited stream is never covered past its max_tokens; the others by one credit.
    assert all(end == TOKENS for end in ends[::2])
    assert all(TOKENS < end <= TOKENS + CREDIT for end in ends[1::2])
    renewals = STREAMS * TOKENS // (CREDIT // 2)
    # Without shared commits there would be one per renewal; sharing makes far fewer (a
    # quarter on an idle machine, 0.28 seen under load).
    assert book.advances < renewals / 2, (book.advances, renewals)
    ledger.close()
