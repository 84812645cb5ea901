"""This gateway's lease on the ledger, and the billing of requests dead gateways left.

Gateways sharing a ledger each hold a lease in `gateways`, renewed every third of it
while the gateway runs. Each journal row names its gateway; a gateway bills, as
`interrupted`, the rows of gateways whose lease is past: when it starts, and then at
every renewal, so a gateway that dies while others run is billed for by them. A gateway
never bills rows of a live one. A restart is a new gateway (a new name): what its
previous run left is billed once that run's lease is past; one that stopped cleanly
gave its lease back, so that is at once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid

import anyio

from tokenfactory.ledger.books import Ledger
from tokenfactory.ledger.gateways import Gateways
from tokenfactory.ledger.open_requests import OpenRequests

log = logging.getLogger("tokenfactory.gateway")


def instance_name() -> str:
    """A name for this gateway process: unique per start, readable in the ledger."""
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Liveness:
    """Keeps one gateway's lease and bills what dead gateways left running."""

    def __init__(self, ledger: Ledger, name: str, lease_s: float) -> None:
        self.name = name
        self.lease_s = lease_s
        self.gateways = Gateways(ledger)
        self.requests = OpenRequests(ledger, name)
        self._beat: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Take the lease (before any request opens a row), bill what dead gateways left,
        and keep doing both."""
        await anyio.to_thread.run_sync(self.gateways.join, self.name, self.lease_s)
        await self._recover()
        self._beat = asyncio.create_task(self._beat_often(), name="gateway lease")

    async def stop(self) -> None:
        """Give the lease back: rows this gateway still holds are billed by the next sweep
        of any gateway, without waiting for the lease to run out."""
        if self._beat is not None:
            self._beat.cancel()
            await asyncio.gather(self._beat, return_exceptions=True)
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(self.gateways.leave, self.name)

    async def _beat_often(self) -> None:
        while True:
            await asyncio.sleep(self.lease_s / 3)
            try:
                await self._renew()
                await self._recover()
            except Exception:  # the ledger is briefly unreachable: the lease has two tries left
                log.exception("could not renew this gateway's lease")

    async def _renew(self) -> None:
        if await anyio.to_thread.run_sync(self.gateways.renew, self.name, self.lease_s):
            return
        # Stalled past its lease: its running requests may have been billed as interrupted
        # by another gateway (their end then bills nothing more). Serve on, alive again.
        log.warning("this gateway's lease had lapsed; its running requests may be billed short")
        await anyio.to_thread.run_sync(self.gateways.join, self.name, self.lease_s)

    async def _recover(self) -> None:
        billed = await anyio.to_thread.run_sync(self.requests.recover)
        if billed:
            log.warning("billed %d requests interrupted by a gateway that died", billed)
