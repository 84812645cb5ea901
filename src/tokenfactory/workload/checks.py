"""Checks of user input shared by the workload modules; each raises BadInput saying where."""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable
from typing import Protocol

from tokenfactory.errors import BadInput


class _Bounded(Protocol):
    @property
    def low(self) -> float: ...


def nearest(wanted: str, valid: Iterable[str]) -> str:
    """'did you mean X?' for the closest valid name, else the list of valid names."""
    choices = sorted(valid)
    near = difflib.get_close_matches(wanted, choices, n=1, cutoff=0.5)
    return f"did you mean {near[0]!r}?" if near else f"valid: {', '.join(choices)}"


def unknown_name(where: str, what: str, wanted: str, valid: Iterable[str]) -> BadInput:
    """A BadInput for `wanted` not being a valid `what`, naming `where` and the nearest name."""
    return BadInput(f"{where}: unknown {what} {wanted!r}; {nearest(wanted, valid)}", param=where)


def require_count(where: str, n: object, least: int = 0) -> None:
    """Refuse anything but an integer >= `least`."""
    if isinstance(n, bool) or not isinstance(n, int) or n < least:
        raise BadInput(f"{where}: expected an integer >= {least}, got {n!r}", param=where)


def require_rate(where: str, rate: float) -> None:
    """Refuse a rate that is not a finite number > 0."""
    if not (math.isfinite(rate) and rate > 0):
        raise BadInput(f"{where}: rate must be > 0 per second, got {rate}", param=where)


def require_low(where: str, dist: _Bounded, least: float = 1) -> None:
    """Refuse a distribution that could draw less than `least` (e.g. a 0-token output)."""
    if dist.low < least:
        raise BadInput(
            f"{where}: values must be >= {least:g}, but the distribution allows {dist.low:g}",
            param=where,
        )
