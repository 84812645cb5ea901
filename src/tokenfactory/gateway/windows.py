"""The window an admin route reports on: `window` back from now, or exact `since`/`until`.

Either way the window is cut to the floor's start (replicas cost nothing before the
gateway had them) and ends no later than now (idle cost is only for time that passed).
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta

from tokenfactory.errors import BadInput
from tokenfactory.gateway.runtime import Floor

UNITS = {"m": 60, "h": 3600, "d": 86400}
UNIX = re.compile(r"[0-9]+(\.[0-9]+)?")


MAX_WINDOW_S = 3660 * 86400  # ten years and then some


def window_s(window: str) -> float:
    """Seconds of a window like `15m`, `1h` or `7d`."""
    unit, count = window[-1:], window[:-1]
    # ASCII digits only ("²".isdigit() is true), and bounded so dates cannot overflow.
    if unit not in UNITS or not (count.isascii() and count.isdigit()) or len(count) > 9:
        raise BadInput(f"window {window!r}: use e.g. 15m, 1h or 7d", param="window")
    seconds = int(count) * UNITS[unit]
    if not 0 < seconds <= MAX_WINDOW_S:
        raise BadInput(
            f"window {window!r}: use e.g. 15m, 1h or 7d, from 1m to {MAX_WINDOW_S // 86400}d",
            param="window",
        )
    return seconds


def moment(text: str, param: str) -> datetime:
    """A time given as unix seconds or ISO 8601 with a time zone, in UTC."""
    if UNIX.fullmatch(text):
        seconds = float(text)
        if not math.isfinite(seconds) or seconds > 253_402_300_799:  # 9999-12-31
            raise BadInput(f"{param} {text!r} is too far in the future", param=param)
        return datetime.fromtimestamp(seconds, UTC)
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise BadInput(
            f"{param} {text!r}: give unix seconds (1767225600) or ISO 8601 (2026-01-01T00:00:00Z)",
            param=param,
        ) from None
    if when.tzinfo is None:
        raise BadInput(
            f"{param} {text!r} has no time zone: add Z or an offset such as +00:00",
            param=param,
        )
    return when.astimezone(UTC)


def bounds(
    floor: Floor, window: str | None, since: str | None, until: str | None, default: str
) -> tuple[datetime, datetime]:
    """[since, until) of a request: exact times, or `window` (else `default`) back from
    `until` (else now); cut to the floor's start and to now."""
    if window is not None and since is not None:
        raise BadInput("give either window or since, not both", param="window")
    now = datetime.now(UTC)
    end = now if until is None else moment(until, "until")
    if since is None:
        start = end - timedelta(seconds=window_s(default if window is None else window))
    else:
        start = moment(since, "since")
        if until is not None and end <= start:
            raise BadInput(f"until ({end.isoformat()}) must be after since", param="until")
    start, end = floor.since(start), min(end, now)
    if end <= start:
        raise BadInput(
            f"the window [{start.isoformat()}, {end.isoformat()}) is empty: it ends before "
            f"the gateway started ({floor.started_at.isoformat()}) or starts in the future",
            param="since" if since is not None else "until",
        )
    return start, end
