"""Open-loop arrivals (all at once, or Poisson) and a closed loop of fixed concurrency."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from tokenfactory.workload.checks import require_count, require_low, require_rate
from tokenfactory.workload.lengths import FloatArray, Length
from tokenfactory.workload.mix import TierMix
from tokenfactory.workload.request import Ids, Request


class OpenLoop:
    """A fixed list of requests; nothing follows up."""

    def __init__(self, requests: Iterable[Request]) -> None:
        self._requests = sorted(requests, key=lambda r: r.arrival_s)

    def initial(self) -> list[Request]:
        """All requests, sorted by arrival_s."""
        return list(self._requests)

    def follow_up(self, done: Request, now: float, ok: bool) -> Request | None:
        """Always None: arrivals do not depend on service."""
        return None


def _requests(
    arrivals: FloatArray,
    inputs: Length,
    outputs: Length,
    mix: TierMix,
    rng: np.random.Generator,
    ids: Ids,
) -> list[Request]:
    require_low("inputs", inputs)
    require_low("outputs", outputs)
    n = len(arrivals)
    ins, outs, tiers = inputs.sample(rng, n), outputs.sample(rng, n), mix.sample(rng, n)
    return [
        Request(ids.request(), a, i, o, t)
        for a, i, o, t in zip(arrivals.tolist(), ins.tolist(), outs.tolist(), tiers, strict=True)
    ]


def offline(
    n: int, inputs: Length, outputs: Length, mix: TierMix, rng: np.random.Generator, ids: Ids
) -> OpenLoop:
    """`n` requests, all arriving at t=0 (a batch job or an offline benchmark)."""
    require_count("offline: n", n)
    return OpenLoop(_requests(np.zeros(n), inputs, outputs, mix, rng, ids))


def poisson(
    rate: float,
    n: int,
    inputs: Length,
    outputs: Length,
    mix: TierMix,
    rng: np.random.Generator,
    ids: Ids,
) -> OpenLoop:
    """`n` requests arriving as a Poisson process of `rate` per second, from t=0."""
    require_count("poisson: n", n)
    require_rate("poisson", rate)
    arrivals = np.cumsum(rng.exponential(1.0 / rate, n))
    return OpenLoop(_requests(arrivals, inputs, outputs, mix, rng, ids))


class ClosedLoop:
    """`concurrency` clients, each sending its next request when the last one ends."""

    def __init__(
        self,
        concurrency: int,
        total: int,
        inputs: Length,
        outputs: Length,
        mix: TierMix,
        rng: np.random.Generator,
        ids: Ids,
    ) -> None:
        require_count("closed loop: concurrency", concurrency, least=1)
        require_count("closed loop: total", total)
        self.concurrency = concurrency
        self.total = total
        # Lengths and tiers for every request are drawn up front, in one call per field;
        # the arrival time is filled in when the request is issued.
        self._pending = _requests(np.zeros(total), inputs, outputs, mix, rng, ids)
        self._issued = 0
        self._first = [self._issue(0.0) for _ in range(min(concurrency, total))]

    @property
    def issued(self) -> int:
        """How many requests have been handed out so far."""
        return self._issued

    def _issue(self, now: float) -> Request:
        r = self._pending[self._issued]
        r.arrival_s = now
        self._issued += 1
        return r

    def initial(self) -> list[Request]:
        """The first `concurrency` requests (fewer if `total` is smaller), all at t=0."""
        return list(self._first)

    def follow_up(self, done: Request, now: float, ok: bool) -> Request | None:
        """The client's next request at `now`, failed or not, until `total` are issued."""
        return self._issue(now) if self._issued < self.total else None
