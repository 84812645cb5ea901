"""Load a scenario file: parse TOML, validate, check against the catalog, say where.

Every error is a ConfigError reading `FILE:LINE: [table] key: what is wrong`, and the
loaded scenario keeps its `Located` so later errors (a model that does not fit in memory)
can point at the key too.
"""

from __future__ import annotations

import difflib
import re
import tomllib
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypeVar, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from tokenfactory.catalog import Catalog
from tokenfactory.config.check import check_scenario
from tokenfactory.config.locate import Located, TablePath, label
from tokenfactory.config.scenario import Scenario
from tokenfactory.errors import ConfigError

M = TypeVar("M", bound=BaseModel)
_TOML_AT = re.compile(r"\s*\(at line (\d+), column (\d+)\)")
_SYNONYMS = {"count": "gpus", "gpu_count": "gpus", "tp": "tensor_parallel"}


@dataclass(frozen=True, slots=True)
class LoadedScenario:
    """A validated scenario and where each of its keys is written."""

    scenario: Scenario
    located: Located
    path: Path | None = None

    def where(self, table: str | TablePath, key: str | None = None) -> str:
        """`"scenario.toml:7"`: the line of `key` in `table` (or of the table)."""
        return self.located.where(table, key)

    def error(self, table: str | TablePath, key: str | None, message: str) -> ConfigError:
        """A ConfigError for a problem found later, e.g. `error("engine", "tensor_parallel",
        "the model does not fit in memory")`."""
        return self.located.error(table, key, message)


def load_scenario(path: Path | str, catalog: Catalog) -> LoadedScenario:
    """Read, validate and check a scenario file; relative paths in it are from its folder."""
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as e:
        raise ConfigError(f"{path}: cannot read scenario file ({e.strerror})") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text (byte {e.start})") from None
    loaded = load_scenario_text(text, str(path), catalog, base_dir=path.parent)
    return LoadedScenario(loaded.scenario, loaded.located, path)


def load_scenario_text(
    text: str, name: str, catalog: Catalog, *, base_dir: Path | None = None
) -> LoadedScenario:
    """Validate scenario TOML held in memory; `name` is what messages call it and
    `base_dir` (default: the current folder) is where relative paths start."""
    scenario, located = load_model_text(text, name, Scenario)
    scenario = _resolve_trace(scenario, located, base_dir or Path())
    check_scenario(scenario, located, catalog)
    return LoadedScenario(scenario, located)


def load_model_text(text: str, name: str, root: type[M]) -> tuple[M, Located]:
    """Parse TOML text into the pydantic model `root`, errors naming file, line and key."""
    located = Located(name, text)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise _toml_error(e, name, text) from None
    try:
        return root.model_validate(data), located
    except ValidationError as e:
        raise _first_error(e, data, located, root) from None


def _toml_error(e: tomllib.TOMLDecodeError, name: str, text: str) -> ConfigError:
    message = str(e)
    at = _TOML_AT.search(message)
    line = int(at.group(1)) if at else max(1, len(text.splitlines()))
    if at:
        message = f"{_TOML_AT.sub('', message)} (column {at.group(2)})"
    return ConfigError(f"{name}:{line}: not valid TOML: {message}")


def _resolve_trace(scenario: Scenario, located: Located, base_dir: Path) -> Scenario:
    trace = scenario.workload.trace
    if trace is None:
        return scenario
    path = (base_dir / trace.expanduser()).resolve()
    if not path.is_file():
        raise located.error(("workload",), "trace", f"no such file: {path}")
    workload = scenario.workload.model_copy(update={"trace": path})
    return scenario.model_copy(update={"workload": workload})


def _first_error(
    e: ValidationError, data: dict[str, Any], located: Located, root: type[BaseModel]
) -> ConfigError:
    """The problem written first in the file, as one ConfigError."""
    first = min(
        e.errors(),
        key=lambda err: (located.line(tuple(err["loc"])), err["type"] != "extra_forbidden"),
    )
    return _convert(first, data, located, root)


def _convert(
    err: ErrorDetails, data: dict[str, Any], located: Located, root: type[BaseModel]
) -> ConfigError:
    loc: TablePath = tuple(err["loc"])
    key = loc[-1] if loc and isinstance(loc[-1], str) else None
    table = loc[:-1] if key is not None else loc
    if err["type"] == "extra_forbidden" and key is not None:
        message = _unknown(table, key, data, root)
        if message.startswith("unknown table"):
            return ConfigError(f"{located.where(table, key)}: {message}", param=key)
        return located.error(table, key, message, name_key=False)
    if err["type"] == "missing" and key is not None:
        if not table:
            return ConfigError(f"{located.where()}: missing table [{key}]", param=key)
        return located.error(table, key, "required (missing)")
    return located.error(table, key, _message(err))


def _unknown(table: TablePath, key: str, data: dict[str, Any], root: type[BaseModel]) -> str:
    """`unknown key 'qsp'; did you mean 'qps'?` or `unknown table [hardwar]; ...`."""
    valid = list(_fields_at(table, root))
    near = difflib.get_close_matches(key, valid, n=1)
    if not near and _SYNONYMS.get(key) in valid:
        near = [_SYNONYMS[key]]
    if isinstance(_value_at(data, (*table, key)), dict) or not table:
        hint = f"; did you mean {label((*table, near[0]))}?" if near else ""
        if not near and not table:
            hint = f"; valid: {', '.join(label(name) for name in valid)}"
        return f"unknown table {label((*table, key))}{hint}"
    hint = f"; did you mean {near[0]!r}?" if near else f"; valid: {', '.join(valid)}"
    return f"unknown key {key!r}{hint}"


def _value_at(data: Any, path: TablePath) -> Any:
    for part in path:
        if isinstance(data, dict) and isinstance(part, str):
            data = data.get(part)
        elif isinstance(data, list) and isinstance(part, int) and part < len(data):
            data = data[part]
        else:
            return None
    return data


def _fields_at(table: TablePath, root: type[BaseModel]) -> dict[str, Any]:
    """The keys the schema allows in `table`."""
    annotation: Any = root
    for part in table:
        annotation = _step(annotation, part)
    for model in _models(annotation):
        return dict(model.model_fields)
    return {}


def _step(annotation: Any, part: str | int) -> Any:
    """The annotation one step down a validation location."""
    for model in _models(annotation):
        if isinstance(part, str) and part in model.model_fields:
            return model.model_fields[part].annotation
    for inner in _unwrap(annotation):
        origin, args = get_origin(inner), get_args(inner)
        if origin in (list, tuple) and isinstance(part, int):
            return args[0]
        if origin is dict and isinstance(part, str):
            return args[1]
    return None


def _unwrap(annotation: Any) -> list[Any]:
    origin = get_origin(annotation)
    if origin is Annotated:
        return _unwrap(get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        return [a for arg in get_args(annotation) for a in _unwrap(arg)]
    return [annotation]


def _models(annotation: Any) -> list[type[BaseModel]]:
    return [a for a in _unwrap(annotation) if isinstance(a, type) and issubclass(a, BaseModel)]


_KINDS = {
    "int_type": "an integer",
    "float_type": "a number",
    "bool_type": "true or false",
    "string_type": "a string",
    "model_type": "a table",
    "dict_type": "a table",
    "list_type": "an array",
    "tuple_type": "an array",
    "path_type": "a file path (a string)",
}
_BOUNDS = {
    "greater_than": ">",
    "greater_than_equal": ">=",
    "less_than": "<",
    "less_than_equal": "<=",
}


def _message(err: ErrorDetails) -> str:
    """Pydantic's complaint in the file's terms: `must be > 0, got 0`."""
    kind, ctx, got = err["type"], err.get("ctx", {}), err["input"]
    shown = _show(got)
    if kind in _KINDS:
        return f"must be {_KINDS[kind]}, got {shown}"
    if kind in _BOUNDS:
        return f"must be {_BOUNDS[kind]} {_bound(next(iter(ctx.values())))}, got {shown}"
    if kind == "literal_error":
        return f"must be {ctx['expected']}, got {shown}"
    if kind == "value_error":
        return err["msg"].removeprefix("Value error, ")
    return f"{err['msg'][:1].lower()}{err['msg'][1:]}, got {shown}"


def _show(value: object) -> str:
    """A value as TOML would write it, near enough for a message."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    return repr(value)


def _bound(value: object) -> str:
    """A limit from the schema: `0`, not `0.0`."""
    return f"{value:g}" if isinstance(value, float) else str(value)
