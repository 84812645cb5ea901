"""Real time for the simulator: the same events, each run when its wall-clock time comes.

As in SimPy's `rt.RealtimeEnvironment`, only stepping changes. A driver task on the
asyncio loop sleeps until the next event is due (wall = origin + simulated / speedup),
or until an earlier event is scheduled, then steps. A late event still runs at its own
simulated time, so lateness never accumulates. Work arriving from outside (an HTTP
request) first calls `catch_up`, which brings `now` to the wall clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from tokenfactory.sim.clock import Callback, Environment

# Events this close to due run now: the loop's timers may fire a hair early.
EARLY_S = 1e-4


class RealtimeEnvironment(Environment):
    """An `Environment` whose events run on the asyncio loop at their wall-clock times."""

    def __init__(self, speedup: float = 1.0) -> None:
        if not speedup > 0:
            raise ValueError(f"speedup must be positive, not {speedup}")
        super().__init__()
        self.speedup = speedup
        self.failure: BaseException | None = None  # what stopped the driver, if it failed
        self._origin = 0.0  # loop time at simulated time 0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def wall_now(self) -> float:
        """The simulated time the wall clock reads now."""
        return (asyncio.get_running_loop().time() - self._origin) * self.speedup

    def at(self, when: float, callback: Callback) -> None:
        """Run `callback` at simulated time `when`; wake the driver if it is now the next."""
        super().at(when, callback)
        if self._queue[0][1] == self._count:
            self._wake.set()

    def catch_up(self) -> None:
        """Run the events that are due, then move `now` to the wall clock."""
        wall = self.wall_now()
        self.run(wall + EARLY_S * self.speedup)
        self.now = max(self.now, wall)

    def start(self) -> None:
        """Start the clock at the current simulated time and the driver task."""
        loop = asyncio.get_running_loop()
        self._origin = loop.time() - self.now / self.speedup
        self._task = loop.create_task(self._drive(), name="realtime-environment")
        self._task.add_done_callback(self._stopped)

    async def stop(self) -> None:
        """Stop the driver; pending events stay queued."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _drive(self) -> None:
        loop = asyncio.get_running_loop()
        queue = self._queue
        while True:
            self.run(self.wall_now() + EARLY_S * self.speedup)
            self._wake.clear()
            delay = None
            if queue:
                delay = self._origin + queue[0][0] / self.speedup - loop.time()
                if delay <= EARLY_S:
                    continue
            # Not a test sleep: this wait is the clock itself.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._wake.wait()

    def _stopped(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and (failure := task.exception()) is not None:
            self.failure = failure
            logging.getLogger(__name__).error("the real-time clock stopped", exc_info=failure)
