"""A SimPy-style event loop: a heap of (time, tie-break, callback), `now`, `step`, `run`."""

from __future__ import annotations

import heapq
from collections.abc import Callable

Callback = Callable[[], None]


class Environment:
    """Simulated time. The counter breaks ties, so a run repeats exactly."""

    def __init__(self) -> None:
        self.now = 0.0
        self._queue: list[tuple[float, int, Callback]] = []
        self._count = 0

    def at(self, when: float, callback: Callback) -> None:
        """Run `callback` at simulated time `when` (never in the past)."""
        self._count += 1
        heapq.heappush(self._queue, (max(when, self.now), self._count, callback))

    def step(self) -> bool:
        """Run the next event; False when there is none."""
        if not self._queue:
            return False
        self.now, _, callback = heapq.heappop(self._queue)
        callback()
        return True

    def run(self, until: float = float("inf")) -> None:
        """Run events until none is left or the next one is after `until`."""
        queue = self._queue
        while queue and queue[0][0] <= until:
            self.step()
