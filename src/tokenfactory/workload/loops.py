"""Closed loops whose requests grow one context: the engine under chat sessions and agents.

Each loop (a chat session or an agent) issues its steps one at a time. Step k+1 arrives a
delay after step k finishes, and its prompt is step k's prompt + step k's output + some
new tokens, so everything but the new tokens is a cacheable prefix. Every length is drawn
when the workload is built, one vectorised call per field; follow_up only looks them up.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tokenfactory.workload.checks import require_rate
from tokenfactory.workload.lengths import FloatArray, IntArray
from tokenfactory.workload.request import Ids, Request


def start_times(rate: float | None, n: int, rng: np.random.Generator, where: str) -> FloatArray:
    """`n` loop start times: a Poisson process of `rate` per second, or all at 0 if None."""
    if rate is None:
        return np.zeros(n)
    require_rate(where, rate)
    return np.cumsum(rng.exponential(1.0 / rate, n))


@dataclass(slots=True)
class _Loop:
    tier: str
    offset: int  # index of the loop's first step in the per-step arrays
    steps: int
    issued: int
    last_id: int


class ContextLoops:
    """Loops of requests sharing a growing context; see the module docstring."""

    def __init__(
        self,
        *,
        starts: FloatArray,
        first_prompt: IntArray,
        steps: IntArray,
        added: IntArray,
        outputs: IntArray,
        delays: FloatArray | None,
        tiers: list[str],
        kind: str,
        ids: Ids,
    ) -> None:
        # Per loop: start, first prompt, step count, tier. Per step, all loops end to end:
        # new tokens (unused for a loop's first step), output tokens, delay before the step.
        offsets = np.cumsum(steps) - steps
        # Python lists: scalar lookups in follow_up are much faster than numpy indexing,
        # and Request fields should be plain ints and floats.
        self._added: list[int] = added.tolist()
        self._outputs: list[int] = outputs.tolist()
        self._delays: list[float] | None = None if delays is None else delays.tolist()
        self._kind = kind
        self._ids = ids
        self._live: dict[int, _Loop] = {}
        self._first: list[Request] = []
        rows = zip(
            starts.tolist(),
            first_prompt.tolist(),
            steps.tolist(),
            offsets.tolist(),
            tiers,
            strict=True,
        )
        for start, prompt, n, offset, tier in rows:
            session = ids.session()
            r = Request(ids.request(), start, prompt, self._outputs[offset], tier, session, 0, kind)
            self._first.append(r)
            self._live[session] = _Loop(tier, offset, n, 1, r.id)

    def initial(self) -> list[Request]:
        """The first step of every loop, sorted by arrival_s."""
        return sorted(self._first, key=lambda r: r.arrival_s)

    @property
    def live(self) -> int:
        """Loops that have not ended yet."""
        return len(self._live)

    def follow_up(self, done: Request, now: float, ok: bool) -> Request | None:
        """The loop's next step after `done`, or None if the loop ended (or `done` failed)."""
        session = done.session
        loop = None if session is None else self._live.get(session)
        if session is None or loop is None or loop.last_id != done.id:
            return None  # not the latest step of one of our live loops
        if not ok or loop.issued >= loop.steps:
            del self._live[session]  # a failed step ends the loop: the user or agent gives up
            return None
        j = loop.offset + loop.issued
        prefix = done.input_tokens + done.output_tokens
        delay = 0.0 if self._delays is None else self._delays[j]
        r = Request(
            self._ids.request(),
            now + delay,
            prefix + self._added[j],
            self._outputs[j],
            loop.tier,
            session,
            prefix,
            self._kind,
        )
        loop.issued += 1
        loop.last_id = r.id
        return r
