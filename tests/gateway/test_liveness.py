"""A gateway's lease loop: it keeps its lease, takes a new one after a stall, bills the rows
of a gateway that dies while it runs (not only at its start) and gives its lease back."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from floor_helpers import T0, interrupted_event

from tokenfactory.gateway.liveness import Liveness
from tokenfactory.ledger import Ledger, Outcome
from tokenfactory.ledger.gateways import Gateways
from tokenfactory.ledger.open_requests import OpenRequests

LEASE_S = 0.6


async def until(condition: Callable[[], bool], deadline_s: float = 10 * LEASE_S) -> None:
    limit = time.monotonic() + deadline_s
    while not condition():
        assert time.monotonic() < limit, "condition not reached in time"
        await asyncio.sleep(0.01)  # the lease loop runs in this event loop: let it


def test_the_lease_loop_keeps_its_lease_and_bills_a_gateway_that_dies_later(
    tmp_path: Path,
) -> None:
    ledger = Ledger.sqlite(tmp_path / "ledger.db")
    ledger.migrate()
    key, _ = ledger.create_key("acme")
    gateways = Gateways(ledger)

    def lease_of(name: str) -> datetime | None:
        return next((g.lease_until for g in gateways.all() if g.name == name), None)

    async def scenario() -> None:
        here = Liveness(ledger, "here", LEASE_S)
        gateways.join("other", LEASE_S)  # alive when `here` starts
        OpenRequests(ledger, "other").advance([interrupted_event("r-other", key.id, 24)])
        OpenRequests(ledger, "here").advance([interrupted_event("r-here", key.id, 8)])
        await here.start()
        assert ledger.event("r-other") is None  # a live gateway's row stays
        first = lease_of("here")
        assert first is not None
        await until(lambda: (lease_of("here") or first) > first)  # renewed
        # `other` dies (never renews): a sweep of `here` bills it once its lease is past.
        await until(lambda: ledger.event("r-other") is not None)
        assert lease_of("other") is None
        # A stall past its lease: the loop finds it lapsed and takes a new one.
        gateways.join("here", -1)
        await until(lambda: (lease_of("here") or T0) > datetime.now(UTC))
        assert ledger.event("r-here") is None  # never its own running request
        await here.stop()
        assert lease_of("here") is None

    asyncio.run(scenario())
    billed = ledger.event("r-other")
    assert billed is not None and billed.output_tokens == 24
    assert billed.outcome == Outcome.INTERRUPTED
    # Stopped, its lease given back: the next gateway to start bills its row at once.
    assert OpenRequests(ledger, "next").recover() == 1
    assert ledger.get_key(key.id).spent_micros == 24 + 8  # type: ignore[union-attr]
    ledger.close()
