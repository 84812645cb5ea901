"""Load the built-in catalog and merge the user's own file over it.

A user file has the same tables as the built-in ones (`[[gpu]]`, `[[model]]`, `[[tier]]`,
`[energy]`). An entry whose id already exists is merged field by field over the built-in
entry, so `{id = "H100-SXM", rent_per_gpu_hour = 1.9}` changes the rent alone; a new id
adds an entry, which then needs every field.
"""

from __future__ import annotations

import difflib
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from tokenfactory.catalog.schema import Energy, Engine, Gpu, Model, Row, Tier
from tokenfactory.errors import ConfigError, UnknownId

R = TypeVar("R", bound=Row)

_TABLES = ("gpu", "model", "engine", "tier")
_BUILTIN = ("gpus.toml", "models.toml", "engines.toml", "tiers.toml", "energy.toml")


@dataclass(frozen=True, slots=True)
class Catalog:
    """The facts the factory is built from, each with its source."""

    gpus: dict[str, Gpu]
    models: dict[str, Model]
    engines: dict[str, Engine]
    tiers: dict[str, Tier]
    energy: Energy

    def gpu(self, gpu_id: str) -> Gpu:
        """The GPU with this id, or UnknownId naming the nearest ones."""
        return _lookup(self.gpus, "GPU", gpu_id)

    def model(self, model_id: str) -> Model:
        """The model with this id, or UnknownId naming the nearest ones."""
        return _lookup(self.models, "model", model_id)

    def engine(self, engine_id: str) -> Engine:
        """The engine kind with this id, or UnknownId naming the nearest ones."""
        return _lookup(self.engines, "engine", engine_id)

    def tier(self, tier_id: str) -> Tier:
        """The tier with this id, or UnknownId naming the nearest ones."""
        return _lookup(self.tiers, "tier", tier_id)

    def entry(self, entry_id: str) -> Row:
        """Any entry by id, whatever its table."""
        everything: dict[str, Row] = {**self.gpus, **self.models, **self.engines, **self.tiers}
        return _lookup(everything, "catalog id", entry_id)


def _lookup(table: dict[str, R], kind: str, wanted: str) -> R:
    try:
        return table[wanted]
    except KeyError:
        raise UnknownId(kind, wanted, table) from None


def load_catalog(user_file: Path | None = None) -> Catalog:
    """The built-in catalog, with `user_file` merged over it when given."""
    raw: dict[str, Any] = {"gpu": [], "model": [], "engine": [], "tier": [], "energy": {}}
    texts: dict[str, str] = {}
    for name in _BUILTIN:
        text = resources.files("tokenfactory.catalog").joinpath("data", name).read_text()
        texts[name] = text
        _merge(raw, _parse(text, name), name)
    if user_file is not None:
        try:
            text = user_file.read_text()
        except OSError as e:
            raise ConfigError(f"{user_file}: cannot read catalog file ({e.strerror})") from None
        texts[str(user_file)] = text
        _merge(raw, _parse(text, str(user_file)), str(user_file))
    return Catalog(
        gpus=_validate_rows(Gpu, raw["gpu"], texts),
        models=_validate_rows(Model, raw["model"], texts),
        engines=_validate_rows(Engine, raw["engine"], texts),
        tiers=_validate_rows(Tier, raw["tier"], texts),
        energy=_validate(Energy, raw["energy"], "[energy]"),
    )


def _parse(text: str, where: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{where}: not valid TOML: {e}") from None


def _merge(raw: dict[str, Any], data: dict[str, Any], where: str) -> None:
    """Fold one file's tables into `raw`, remembering which file each entry came from."""
    unknown = sorted(set(data) - {*_TABLES, "energy"})
    if unknown:
        raise ConfigError(
            f"{where}: unknown table {unknown[0]!r}; expected [[gpu]], [[model]], [[engine]], "
            "[[tier]] or [energy]"
        )
    if "energy" in data:
        if not isinstance(data["energy"], dict):
            raise ConfigError(f"{where}: [energy] must be a table")
        raw["energy"] = {**raw["energy"], **data["energy"]}
    for table in _TABLES:
        entries = data.get(table, [])
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            raise ConfigError(f"{where}: {table} must be written as [[{table}]] tables")
        for entry in entries:
            if not isinstance(entry.get("id"), str):
                raise ConfigError(f"{where}: a [[{table}]] entry has no string 'id'")
            rows: list[dict[str, Any]] = raw[table]
            old = next((r for r in rows if r["id"] == entry["id"]), None)
            if old is None:
                rows.append({**entry, "_from": where})
            else:
                sources = {**old.get("sources", {}), **entry.get("sources", {})}
                old.update(entry, sources=sources, _from=where)


def _validate_rows(
    row_type: type[R], rows: list[dict[str, Any]], texts: dict[str, str]
) -> dict[str, R]:
    out: dict[str, R] = {}
    for row in rows:
        where = row.pop("_from")
        line = _line_of(texts[where], row["id"])
        out[row["id"]] = _validate(row_type, row, f"{where}:{line}: entry {row['id']!r}")
    return out


M = TypeVar("M", bound=BaseModel)


def _validate(model_type: type[M], data: dict[str, Any], where: str) -> M:
    try:
        return model_type.model_validate(data)
    except ValidationError as e:
        first = e.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "entry"
        message = first["msg"]
        if first["type"] == "extra_forbidden":
            message = _unknown_field_hint(field, model_type)
        raise ConfigError(f"{where}: {field}: {message}") from None


def _unknown_field_hint(field: str, model_type: type[BaseModel]) -> str:
    near = difflib.get_close_matches(field, list(model_type.model_fields), n=1)
    return f"unknown field; did you mean {near[0]!r}?" if near else "unknown field"


def _line_of(text: str, entry_id: str) -> int:
    """The line on which an entry's id is written, for error messages (0 if not found)."""
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.replace(" ", "")
        if stripped.startswith(f'id="{entry_id}"') or f'{{id="{entry_id}"' in stripped:
            return number
    return 0
