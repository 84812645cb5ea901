"""The gateway's ledger writer, and write-ahead metering of streams.

`Journal` is the one writer of the requests' ledger writes: opening a journal row with
its budget reservation, advancing a stream's row, billing a request as it closes, giving
back what a refused request reserved. A caller queues its write and awaits its own answer;
the writer takes everything queued, runs it in one worker-thread hop and one transaction,
in order (a budget check sees what earlier writes of the round reserved), and answers
each caller (OpenRequests.apply). So a busy floor pays one commit and one thread hop per
round, not per request. A failed round is retried write by write, so one bad write fails
only its own caller. A write, once queued, is done even if its caller is cancelled: a
request's usage is never left half-written, and it is answered only once its event is
committed.

A stream has a credit of `CREDIT` tokens: before it sends a token past what its journal
row covers, that row is advanced to cover `CREDIT` more. The renewal is asked for when
half the credit is left, so a stream rarely waits on it. Tokens that arrive together are
sent together, as far as the row covers them: a burst longer than that goes in parts,
each covered before it is sent. Killed at any moment, the ledger holds at least every
token a client received and at most `CREDIT` more (and never more than the request's
max_tokens).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from tokenfactory.ledger.open_requests import (
    Advance,
    Close,
    Done,
    Op,
    Open,
    OpenRequests,
    Withdraw,
)
from tokenfactory.ledger.records import UsageEvent

CREDIT = 16  # tokens a stream may send ahead of its row; the most a kill over-bills


class Journal:
    """One writer for the ledger writes of every running request, many per transaction."""

    def __init__(self, book: OpenRequests) -> None:
        self.book = book
        self._pending: list[tuple[Op, asyncio.Future[Any]]] = []
        self._writer: asyncio.Task[None] | None = None
        # Its own thread: a hop costs less than through anyio's shared pool, and rounds
        # never wait behind other blocking work.
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="journal")

    def stop(self) -> None:
        """End the journal's thread once the round it runs, if any, has committed."""
        self._thread.shutdown(wait=True)

    async def open(self, event: UsageEvent, reserve_micros: int) -> bool:
        """Reserve budget and open the request's row; False when the budget cannot cover it.

        A caller cancelled meanwhile will never run the request: the open, which goes on,
        is followed by a withdrawal, so that what it reserves is given back at once, not
        only when a gateway bills the row after this one is dead."""
        done = self._queue(Open(event, reserve_micros))
        try:
            opened: bool = await _answer(done)
        except asyncio.CancelledError:
            # Queued after the open, it runs after it; where nothing was opened, it finds
            # no row and gives back nothing.
            self._queue(Withdraw(event.request_id, event.key_id)).add_done_callback(_quiet)
            raise
        return opened

    def advance(self, event: UsageEvent) -> asyncio.Future[None]:
        """Have `event` made its row's in the next round; the future is done once it is."""
        return self._queue(Advance(event))

    async def close(self, event: UsageEvent, reserve_micros: int, *, journalled: bool) -> bool:
        """Bill the request, settle its reservation, drop its row; False if billed already."""
        billed: bool = await _answer(self._queue(Close(event, reserve_micros, journalled)))
        return billed

    async def withdraw(self, request_id: str, key_id: int) -> None:
        """Drop a refused request's row and give back what it reserved."""
        await _answer(self._queue(Withdraw(request_id, key_id)))

    def _queue(self, op: Op) -> asyncio.Future[Any]:
        done = asyncio.get_running_loop().create_future()
        self._pending.append((op, done))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write(), name="journal writer")
        return done

    async def _write(self) -> None:
        loop = asyncio.get_running_loop()
        while self._pending:
            round_, self._pending = self._pending, []
            ops = [op for op, _ in round_]
            answers: list[Done]
            try:
                round_done = loop.run_in_executor(self._thread, self.book.apply, ops)
                answers = await asyncio.shield(round_done)  # once begun, a round is never dropped
            except Exception as e:  # not one of the ops: every caller of the round gets it
                answers = [e] * len(ops)
            for (_, done), answer in zip(round_, answers, strict=True):
                _resolve(done, answer)


async def _answer(done: asyncio.Future[Any]) -> Any:
    """The write's answer; a cancelled caller stops waiting, the write goes on."""
    return await asyncio.shield(done)


def _quiet(done: asyncio.Future[Any]) -> None:
    """Nobody awaits this write: take its outcome so an error is not reported unread (a
    withdrawal that fails leaves the row to be billed as interrupted, as if unasked)."""
    if not done.cancelled():
        done.exception()


def _resolve(done: asyncio.Future[Any], answer: Done) -> None:
    if isinstance(answer, Exception):
        done.set_exception(answer)
    else:
        done.set_result(answer)


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

    async def send(self, tokens: int = 1) -> int:
        """Return once the journal covers the first of `tokens` more: how many of them it
        covers, counted as sent. All of them, unless they reach past one credit beyond
        the tokens sent before; the caller sends those, then asks again for the rest."""
        sent = self.sent  # all sent by now: the caller sends a part before asking again
        renewal = self._renewal
        if renewal is not None and (sent + tokens > self.covered or renewal[1].done()):
            await self.settle()
        capped = self.limit is not None and self.covered >= self.limit
        if self._renewal is None and (
            sent >= self.covered or (not capped and self.covered - sent < self.credit // 2)
        ):
            self._renew(sent)
        if sent >= self.covered:
            await self.settle()
        self.sent = min(sent + tokens, self.covered)
        return self.sent - sent

    async def settle(self) -> None:
        """Wait for the renewal in flight, if any (raises if it could not be written)."""
        if self._renewal is None:
            return
        tokens, done = self._renewal
        try:
            await asyncio.shield(done)
        finally:
            if done.done():  # cancelled while it is written, it stays for the next settle
                self._renewal = None
        self.covered = max(self.covered, tokens)

    def _renew(self, sent: int) -> None:
        """Have the row cover one credit past the tokens sent: never further, so a kill
        bills at most a credit more than went out; nor past max_tokens, but for the next
        token of an engine that overran it."""
        tokens = sent + self.credit
        if self.limit is not None:
            tokens = max(sent + 1, min(tokens, self.limit))
        self._renewal = (tokens, self.journal.advance(self.event_for(tokens)))
