"""Several workloads at once, e.g. human chat beside agent loops beside a batch job."""

from __future__ import annotations

from collections.abc import Sequence

from tokenfactory.errors import BadInput
from tokenfactory.workload.request import Request
from tokenfactory.workload.source import Workload


class Composite:
    """The union of `parts`; each follow-up goes to the part that issued the request.

    The parts must share one Ids so that request ids are unique across the whole.
    """

    def __init__(self, parts: Sequence[Workload]) -> None:
        self.parts = tuple(parts)
        self._owner: dict[int, int] = {}  # outstanding request id -> index of its part
        self._initial: list[Request] | None = None

    def _own(self, r: Request, part: int) -> None:
        if r.id in self._owner:
            raise BadInput(
                f"composite workload: request id {r.id} issued twice; "
                "build all parts with one shared Ids"
            )
        self._owner[r.id] = part

    def initial(self) -> list[Request]:
        """Every part's initial requests, merged and sorted by arrival_s."""
        if self._initial is not None:
            return list(self._initial)
        merged: list[Request] = []
        for i, part in enumerate(self.parts):
            for r in part.initial():
                self._own(r, i)
                merged.append(r)
        merged.sort(key=lambda r: r.arrival_s)  # stable: ties keep part order
        self._initial = merged
        return list(merged)

    def follow_up(self, done: Request, now: float, ok: bool) -> Request | None:
        """The issuing part's follow-up to `done`; None for a request no part issued."""
        part = self._owner.pop(done.id, None)
        if part is None:
            return None
        nxt = self.parts[part].follow_up(done, now, ok)
        if nxt is not None:
            self._own(nxt, part)
        return nxt
