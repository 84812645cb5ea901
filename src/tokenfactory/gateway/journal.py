"""Write-ahead metering of streams: the ledger holds a stream's tokens before it sends them.

A stream has a credit of `CREDIT` tokens: before it sends a token past what its journal
row covers, that row is advanced to cover `CREDIT` more. The renewal is asked for when
half the credit is left, so a stream rarely waits on it. Killed at any moment, the ledger
holds at least every token a client received and at most `CREDIT` more (and never more
than the request's max_tokens). Renewals from all
streams are written together, one transaction per round (`Journal`), so the cost is one
commit per round and not one per token or per stream.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

import anyio

from tokenfactory.ledger.open_requests import OpenRequests
from tokenfactory.ledger.records import UsageEvent

CREDIT = 16  # tokens a stream may send ahead of its row; the most a kill over-bills


class Journal:
    """One writer for the journal rows of every running stream."""

    def __init__(self, book: OpenRequests) -> None:
        self.book = book
        self._pending: dict[str, UsageEvent] = {}
        self._round: asyncio.Future[None] | None = None
        self._writer: asyncio.Task[None] | None = None

    def write(self, event: UsageEvent) -> asyncio.Future[None]:
        """Have `event` written in the next round; the future is done once it is."""
        self._pending[event.request_id] = event  # a newer count replaces an unwritten one
        if self._round is None:
            self._round = asyncio.get_running_loop().create_future()
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write(), name="journal writer")
        return self._round

    async def _write(self) -> None:
        while self._pending:
            events, done = list(self._pending.values()), self._round
            self._pending, self._round = {}, None
            assert done is not None  # set with the first pending event
            try:
                with anyio.CancelScope(shield=True):
                    await anyio.to_thread.run_sync(self.book.advance, events)
            except Exception as e:  # each stream waiting on the round gets the error
                done.set_exception(e)
                continue
            done.set_result(None)


@dataclass
class Tab:
    """One stream's count: tokens sent, and tokens its journal row covers."""

    journal: Journal
    event_for: Callable[[int], UsageEvent]  # the event that bills n output tokens
    limit: int | None = None  # the request's max_tokens: never billed past it
    credit: int = CREDIT
    sent: int = 0
    covered: int = 0
    _renewal: tuple[int, asyncio.Future[None]] | None = field(default=None, repr=False)

    async def send(self, tokens: int = 1) -> None:
        """Return once the journal covers `tokens` more; count them as sent."""
        target = self.sent + tokens
        if self._renewal is not None and (target > self.covered or self._renewal[1].done()):
            await self.settle()
        if target > self.covered:
            self._renew(target)
            await self.settle()
        self.sent = target
        capped = self.limit is not None and self.covered >= self.limit
        if self._renewal is None and not capped and self.covered - target < self.credit // 2:
            self._renew(target)

    async def settle(self) -> None:
        """Wait for the renewal in flight, if any (raises if it could not be written)."""
        if self._renewal is None:
            return
        tokens, done = self._renewal
        try:
            await done
        finally:
            if done.done():  # cancelled while it is written, it stays for the next settle
                self._renewal = None
        self.covered = max(self.covered, tokens)

    def _renew(self, sent: int) -> None:
        tokens = sent + self.credit
        if self.limit is not None:
            tokens = max(sent, min(tokens, self.limit))
        self._renewal = (tokens, self.journal.write(self.event_for(tokens)))
