"""Trace files: recorded or synthetic requests as CSV (header row) or JSONL, read and written.

Columns (CSV) or keys (JSONL): arrival_s, input_tokens, output_tokens are required;
tier, session, prefix_tokens and kind are optional. Errors name file, line and column.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import TypeVar

from tokenfactory.errors import ConfigError
from tokenfactory.workload.arrivals import OpenLoop
from tokenfactory.workload.checks import nearest
from tokenfactory.workload.request import KINDS, TIERS, Ids, Request

REQUIRED = ("arrival_s", "input_tokens", "output_tokens")
COLUMNS = (*REQUIRED, "tier", "session", "prefix_tokens", "kind")
_T = TypeVar("_T")


class _Bad(ValueError):
    """A field that cannot be used; the caller adds file, line and column."""


def _integer(raw: object, least: int) -> int:
    what = "a positive integer" if least == 1 else "an integer >= 0"
    value: object = raw
    if isinstance(raw, str):
        try:
            value = int(raw.strip())
        except ValueError:
            value = None
    elif isinstance(raw, float) and raw.is_integer():
        value = int(raw)  # JSON writers sometimes emit 12.0 for 12
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise _Bad(f"expected {what}, got {raw!r}")
    return value


def _arrival(raw: object) -> float:
    value: object = raw
    if isinstance(raw, str):
        try:
            value = float(raw.strip())
        except ValueError:
            value = None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Bad(f"expected seconds >= 0, got {raw!r}")
    if not (math.isfinite(value) and value >= 0):
        raise _Bad(f"expected seconds >= 0, got {raw!r}")
    return float(value)


def _absent(raw: object) -> bool:
    return raw is None or (isinstance(raw, str) and not raw.strip())


def _name(raw: object, valid: tuple[str, ...], default: str, what: str) -> str:
    if _absent(raw):
        return default
    if not isinstance(raw, str) or raw.strip() not in valid:
        raise _Bad(f"unknown {what} {raw!r}; {nearest(str(raw), valid)}")
    return raw.strip()


def _positive(raw: object) -> int:
    return _integer(raw, 1)


def _session(raw: object) -> int | None:
    return None if _absent(raw) else _integer(raw, 0)


def _prefix(raw: object) -> int:
    return 0 if _absent(raw) else _integer(raw, 0)


def _tier(raw: object) -> str:
    return _name(raw, TIERS, "standard", "tier")


def _kind(raw: object) -> str:
    return _name(raw, KINDS, "request", "kind")


def _request(row: Mapping[str, object], where: str) -> Request:
    def get(key: str, parse: Callable[[object], _T]) -> _T:
        try:
            return parse(row.get(key))
        except _Bad as e:
            raise ConfigError(f"{where}: {key}: {e}", param=key) from None

    r = Request(
        id=-1,  # numbered after sorting, in read_trace
        arrival_s=get("arrival_s", _arrival),
        input_tokens=get("input_tokens", _positive),
        output_tokens=get("output_tokens", _positive),
        tier=get("tier", _tier),
        session=get("session", _session),
        prefix_tokens=get("prefix_tokens", _prefix),
        kind=get("kind", _kind),
    )
    if r.prefix_tokens > r.input_tokens:
        raise ConfigError(
            f"{where}: prefix_tokens: {r.prefix_tokens} exceeds input_tokens {r.input_tokens}",
            param="prefix_tokens",
        )
    return r


def _check_names(names: Iterable[str], where: str, what: str) -> None:
    names = list(names)
    for name in names:
        if name not in COLUMNS:
            raise ConfigError(f"{where}: unknown {what} {name!r}; {nearest(name, COLUMNS)}")
    for name in REQUIRED:
        if name not in names:
            raise ConfigError(f"{where}: missing {what} {name!r}")


def _csv_rows(path: Path, f: Iterable[str]) -> Iterator[Request]:
    reader = csv.reader(f)
    header = [h.strip() for h in next(reader, [])]
    if len(set(header)) != len(header):
        raise ConfigError(f"{path}:1: a column is named twice: {header}")
    _check_names(header, f"{path}:1", "column")
    for row in reader:
        if not row:
            continue  # blank line
        where = f"{path}:{reader.line_num}"
        if len(row) != len(header):
            raise ConfigError(f"{where}: expected {len(header)} fields, got {len(row)}")
        yield _request(dict(zip(header, row, strict=True)), where)


def _jsonl_rows(path: Path, f: Iterable[str]) -> Iterator[Request]:
    for line, text in enumerate(f, start=1):
        if not text.strip():
            continue
        where = f"{path}:{line}"
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as e:
            raise ConfigError(f"{where}: invalid JSON: {e.msg}") from None
        if not isinstance(obj, dict):
            raise ConfigError(f"{where}: expected a JSON object, got {type(obj).__name__}")
        _check_names(obj, where, "key")
        yield _request(obj, where)


_READERS = {".csv": _csv_rows, ".jsonl": _jsonl_rows}


def _format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in _READERS:
        raise ConfigError(f"{path}: unknown trace format {path.suffix!r}; expected .csv or .jsonl")
    return suffix


def read_trace(path: str | Path, ids: Ids | None = None) -> OpenLoop:
    """The requests of a trace file, sorted by arrival; ids and sessions numbered from `ids`."""
    path = Path(path)
    rows = _READERS[_format(path)]
    try:
        with path.open(encoding="utf-8", newline="") as f:
            requests = sorted(rows(path, f), key=lambda r: r.arrival_s)
    except OSError as e:
        raise ConfigError(f"{path}: cannot read trace: {e.strerror}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text: {e.reason}") from None
    ids = Ids() if ids is None else ids
    # Renumber sessions from the shared counter so a trace's sessions cannot collide with
    # those of other parts of a composite workload (the simulator caches by session).
    sessions: dict[int, int] = {}
    for r in requests:
        r.id = ids.request()
        if r.session is not None:
            if r.session not in sessions:
                sessions[r.session] = ids.session()
            r.session = sessions[r.session]
    return OpenLoop(requests)


def _row(r: Request) -> dict[str, object]:
    return {
        "arrival_s": r.arrival_s,
        "input_tokens": r.input_tokens,
        "output_tokens": r.output_tokens,
        "tier": r.tier,
        "session": r.session,
        "prefix_tokens": r.prefix_tokens,
        "kind": r.kind,
    }


def write_trace(path: str | Path, requests: Iterable[Request]) -> None:
    """Write `requests` as a trace file that read_trace reads back (format by suffix)."""
    path = Path(path)
    suffix = _format(path)
    try:
        with path.open("w", encoding="utf-8", newline="") as f:
            if suffix == ".jsonl":
                f.writelines(json.dumps(_row(r)) + "\n" for r in requests)
                return
            writer = csv.DictWriter(f, fieldnames=COLUMNS)
            writer.writeheader()
            # csv writes None as an empty field, which read_trace reads as "no session".
            writer.writerows(_row(r) for r in requests)
    except OSError as e:
        raise ConfigError(f"{path}: cannot write trace: {e.strerror}") from None
