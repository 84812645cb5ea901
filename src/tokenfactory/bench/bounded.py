"""A workload cut to its first n requests, so bench and the simulator send the same ones."""

from __future__ import annotations

from tokenfactory.workload import Request, Workload


class Capped:
    """At most `limit` requests of `inner`: the earliest initial ones, then follow-ups in
    the order they are issued, until `limit` have been handed out."""

    def __init__(self, inner: Workload, limit: int) -> None:
        self.inner, self.limit = inner, limit
        self.issued = 0
        self._initial: list[Request] | None = None

    def initial(self) -> list[Request]:
        """The inner initial requests, cut to `limit` by arrival."""
        if self._initial is None:
            self._initial = self.inner.initial()[: self.limit]
            self.issued = len(self._initial)
        return list(self._initial)

    def follow_up(self, done: Request, now: float, ok: bool) -> Request | None:
        """The inner follow-up while the cap allows one, else None."""
        nxt = self.inner.follow_up(done, now, ok)
        if nxt is None or self.issued >= self.limit:
            return None
        self.issued += 1
        return nxt
