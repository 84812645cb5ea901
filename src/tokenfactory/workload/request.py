"""One unit of demand, and the counter that keeps ids unique across a workload."""

from __future__ import annotations

from dataclasses import dataclass

TIERS = ("realtime", "standard", "flex", "batch")
KINDS = ("request", "chat", "agent")


@dataclass(slots=True)
class Request:
    """A request as the simulator sees it: when it arrives, how much it reads and writes."""

    id: int
    arrival_s: float
    input_tokens: int  # whole prompt, prefix included (>= 1)
    output_tokens: int  # tokens the model will generate (>= 1)
    tier: str = "standard"  # one of TIERS
    session: int | None = None  # requests of one session share a growing context
    prefix_tokens: int = 0  # leading tokens equal to the session's previous prompt + output
    kind: str = "request"  # one of KINDS


class Ids:
    """Hands out request and session ids; share one among all parts of a workload."""

    __slots__ = ("_request", "_session")

    def __init__(self) -> None:
        self._request = 0
        self._session = 0

    def request(self) -> int:
        """The next unused request id."""
        n = self._request
        self._request = n + 1
        return n

    def session(self) -> int:
        """The next unused session (or agent) id."""
        n = self._session
        self._session = n + 1
        return n
