"""What the simulator asks of any workload."""

from __future__ import annotations

from typing import Protocol

from tokenfactory.workload.request import Request


class Workload(Protocol):
    """A source of requests: some known up front, others issued as earlier ones finish."""

    def initial(self) -> list[Request]:
        """Requests whose arrival does not depend on service, sorted by arrival_s."""
        ...

    def follow_up(self, done: Request, now: float, ok: bool) -> Request | None:
        """The next request of `done`'s closed loop (arrival_s >= now), or None."""
        ...
