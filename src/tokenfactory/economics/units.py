"""Unit constants and the one float-to-Decimal conversion for money."""

from __future__ import annotations

from decimal import Decimal

HOURS_PER_YEAR = Decimal(365 * 24)
SECONDS_PER_HOUR = 3600
MILLION = Decimal(1_000_000)


def dec(x: float | int | Decimal) -> Decimal:
    """A Decimal from a float by its shortest repr, so 0.1 stays 0.1."""
    if isinstance(x, Decimal):
        return x
    # An int converts exactly, with no string between (a token count, per request).
    return Decimal(x) if type(x) is int else Decimal(repr(x))
