"""Where a key is written in a TOML file, so errors found later can name file and line.

`Located` scans the text once (loosely: it never rejects what tomllib accepts) and maps
key paths to line numbers: `[a]`, `[a.b]`, `[[a.b]]` (each entry gets an index),
`key = value`, dotted keys `a.b = value`, and the entries of multi-line arrays. A path that
was not written falls back to its nearest written parent, then to line 1.
"""

from __future__ import annotations

import json
import re

from tokenfactory.errors import ConfigError

Part = str | int
TablePath = tuple[Part, ...]

_BARE = re.compile(r"[A-Za-z0-9_-]+")
_INDEX = re.compile(r"^(.*)\[(\d+)\]$")


def split_path(path: str | TablePath | None) -> TablePath:
    """`"workload.mix[1]"` -> `("workload", "mix", 1)`; tuples pass through."""
    if path is None:
        return ()
    if isinstance(path, tuple):
        return path
    parts: list[Part] = []
    for piece in path.split(".") if path else []:
        match = _INDEX.match(piece)
        if match:
            parts += [match.group(1), int(match.group(2))]
        else:
            parts.append(piece)
    return tuple(parts)


def label(table: str | TablePath) -> str:
    """How a table is named in messages: `[engine]`, `[[workload.mix]] #2`, or ''."""
    path = split_path(table)
    if not path:
        return ""
    if isinstance(path[-1], int):
        return f"[[{_dotted(path[:-1])}]] #{path[-1] + 1}"
    return f"[{_dotted(path)}]"


def _dotted(path: TablePath) -> str:
    return ".".join(f"[{p}]" if isinstance(p, int) else p for p in path).replace(".[", "[")


class Located:
    """A TOML text and its name, answering 'on which line is this key written?'."""

    def __init__(self, name: str, text: str) -> None:
        self.name = name
        self._lines: dict[TablePath, int] = {}
        self._implicit: dict[TablePath, int] = {}
        _Scanner(self._lines, self._implicit).scan(text)

    def line(self, table: str | TablePath = (), key: str | None = None) -> int:
        """The line of `key` in `table`, else of its nearest written parent, else 1."""
        path = split_path(table) + split_path(key)
        while path:
            found = self._lines.get(path) or self._implicit.get(path)
            if found:
                return found
            path = path[:-1]
        return 1

    def where(self, table: str | TablePath = (), key: str | None = None) -> str:
        """`"scenario.toml:7"` for a key, as error messages begin."""
        return f"{self.name}:{self.line(table, key)}"

    def error(
        self, table: str | TablePath, key: str | None, message: str, *, name_key: bool = True
    ) -> ConfigError:
        """A ConfigError reading `FILE:LINE: [table] key: message` (LINE: the key's line).

        With `name_key=False` the message itself names the key: `FILE:LINE: [table] message`.
        """
        path = split_path(table)
        shown = f"{key}:" if key and name_key else ""
        head = " ".join(part for part in (label(path), shown) if part)
        param = ".".join(str(p) for p in (*path, key) if p is not None) or None
        text = f"{head} {message}" if head else message
        return ConfigError(f"{self.where(path, key)}: {text}", param=param)


class _Scanner:
    """One pass over the text; state carries multi-line strings and arrays across lines."""

    def __init__(self, lines: dict[TablePath, int], implicit: dict[TablePath, int]) -> None:
        self.lines = lines
        self.implicit = implicit
        self.arrays: dict[TablePath, int] = {}
        self.table: TablePath = ()
        self.string: str | None = None  # the delimiter of an open multi-line string
        self.depth = 0
        self.array: TablePath | None = None  # the key whose multi-line array is open
        self.index = 0
        self.started = False

    def scan(self, text: str) -> None:
        for number, line in enumerate(text.splitlines(), start=1):
            if self.string or self.depth:
                self._value(line, 0, number, None)
                continue
            start = _skip(line, 0)
            if start >= len(line) or line[start] == "#":
                continue
            if line[start] == "[":
                self._header(line, start, number)
            else:
                self._key(line, start, number)

    def _record(self, path: TablePath, number: int, first: int) -> None:
        self.lines.setdefault(path, number)
        for end in range(first, len(path)):
            self.implicit.setdefault(path[:end], number)

    def _header(self, line: str, start: int, number: int) -> None:
        double = line.startswith("[[", start)
        parsed = _parse_key(line, start + (2 if double else 1))
        if parsed is None:
            return
        resolved: TablePath = ()
        for k, part in enumerate(parsed[0]):
            resolved += (part,)
            if double and k == len(parsed[0]) - 1:
                self.lines.setdefault(resolved, number)
                index = self.arrays.get(resolved, 0)
                self.arrays[resolved] = index + 1
                resolved += (index,)
            elif resolved in self.arrays:
                resolved += (self.arrays[resolved] - 1,)
        self.table = resolved
        self._record(resolved, number, 1)

    def _key(self, line: str, start: int, number: int) -> None:
        parsed = _parse_key(line, start)
        if parsed is None:
            return
        parts, end = parsed
        end = _skip(line, end)
        if end >= len(line) or line[end] != "=":
            return
        path = self.table + tuple(parts)
        self._record(path, number, len(self.table) + 1)
        self._value(line, end + 1, number, path)

    def _value(self, s: str, i: int, number: int, key: TablePath | None) -> None:
        while i < len(s):
            if self.string:
                end = s.find(self.string, i)
                if end < 0:
                    return
                i, self.string = end + 3, None
                continue
            c = s[i]
            if c == "#":
                return
            if self.array is not None and self.depth == 1 and not c.isspace() and c not in ",]":
                self._element(number)
            if s.startswith('"""', i) or s.startswith("'''", i):
                self.string, i = s[i : i + 3], i + 3
                continue
            if c in "\"'":
                i = _string_end(s, i)
                continue
            if c in "[{":
                if self.depth == 0 and c == "[" and key is not None:
                    self.array, self.index, self.started = key, 0, False
                self.depth += 1
            elif c in "]}":
                self.depth = max(0, self.depth - 1)
                if self.depth == 0:
                    self.array = None
            elif c == "," and self.depth == 1 and self.array is not None:
                self.index, self.started = self.index + 1, False
            i += 1

    def _element(self, number: int) -> None:
        if not self.started and self.array is not None:
            self.lines.setdefault((*self.array, self.index), number)
            self.started = True


def _skip(s: str, i: int) -> int:
    while i < len(s) and s[i] in " \t":
        i += 1
    return i


def _string_end(s: str, i: int) -> int:
    """The index just past the one-line string that opens at `s[i]`."""
    quote, j = s[i], i + 1
    while j < len(s):
        if quote == '"' and s[j] == "\\":
            j += 2
            continue
        if s[j] == quote:
            return j + 1
        j += 1
    return len(s)


def _parse_key(s: str, i: int) -> tuple[list[str], int] | None:
    """A (possibly dotted, possibly quoted) key starting at `s[i]`, and where it ends."""
    parts: list[str] = []
    while True:
        i = _skip(s, i)
        if i < len(s) and s[i] in "\"'":
            end = _string_end(s, i)
            raw = s[i:end]
            try:
                parts.append(json.loads(raw) if raw[0] == '"' else raw[1:-1])
            except ValueError:
                parts.append(raw[1:-1])
            i = end
        else:
            match = _BARE.match(s, i)
            if match is None:
                return None
            parts.append(match.group())
            i = match.end()
        i = _skip(s, i)
        if i < len(s) and s[i] == ".":
            i += 1
            continue
        return parts, i
