"""Value types shared by the scenario tables: money, token lengths and durations.

A length or duration is either a number or a distribution table such as
`{dist = "lognormal", mean = 300, max = 1024}`; the table is kept as written and the
workload package turns it into a distribution.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainValidator

Dist = dict[str, Any]

_DIST_HINT = 'a table such as {dist = "lognormal", mean = 300}'


def to_decimal(value: object) -> Decimal:
    """A TOML int, float or string as an exact Decimal (floats go through `str`)."""
    if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
        raise ValueError(f"must be a number, got {value!r}")
    try:
        number = value if isinstance(value, Decimal) else Decimal(str(value).strip())
    except InvalidOperation:
        raise ValueError(f"must be a number, got {value!r}") from None
    if not number.is_finite():
        raise ValueError(f"must be a finite number, got {value!r}")
    return number


def _dist(value: dict[Any, Any]) -> Dist:
    if not isinstance(value.get("dist"), str):
        raise ValueError(f"a distribution needs a 'dist' name, as in {_DIST_HINT}")
    return dict(value)


def _length(minimum: int) -> Any:
    def check(value: object) -> int | Dist:
        if isinstance(value, dict):
            return _dist(value)
        if isinstance(value, int) and not isinstance(value, bool) and value >= minimum:
            return value
        raise ValueError(f"must be an integer >= {minimum} or {_DIST_HINT}, got {value!r}")

    return PlainValidator(check)


def _duration(value: object) -> float | Dist:
    if isinstance(value, dict):
        return _dist(value)
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
        return float(value)
    raise ValueError(f"must be a number of seconds >= 0 or {_DIST_HINT}, got {value!r}")


Money = Annotated[Decimal, BeforeValidator(to_decimal)]
"""Dollars (or a ratio of prices): exact, from a TOML int, float or string."""

Length = Annotated[int | Dist, _length(1)]
"""A token count >= 1, or a distribution table."""

Tokens = Annotated[int | Dist, _length(0)]
"""A token count >= 0, or a distribution table."""

Seconds = Annotated[float | Dist, PlainValidator(_duration)]
"""A duration in seconds >= 0, or a distribution table."""
