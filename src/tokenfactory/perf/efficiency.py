"""The performance model's fitted parameters, kept as data (`data/efficiency.toml`)."""

from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

from tokenfactory.errors import UnknownId
from tokenfactory.perf.model import Efficiency

ENGINE_KINDS = ("vllm", "sglang", "trtllm", "llamacpp")
_FIELDS = ("compute", "memory", "step_overhead_s", "seq_overhead_s")
# absent: the same as compute (fractions), or none (host time an engine does not overlap,
# MoE dispatch cost)
_OPTIONAL = (
    "fp4_compute",
    "attention_compute",
    "host_step_s",
    "eager_allreduce_s",
    "dispatch_bytes",
)


def efficiency_path() -> Path:
    """Where the built-in parameters live (calibrate rewrites this file)."""
    return Path(str(resources.files("tokenfactory.perf").joinpath("data", "efficiency.toml")))


def load_efficiencies(path: Path | None = None) -> dict[str, Efficiency]:
    """Every engine kind's parameters."""
    data = tomllib.loads((path or efficiency_path()).read_text())["engine"]
    return {kind: _efficiency(row) for kind, row in data.items()}


def _efficiency(row: dict[str, Any]) -> Efficiency:
    fields = {f: float(row[f]) for f in _FIELDS}
    optional = {f: float(row[f]) for f in _OPTIONAL if f in row}
    return Efficiency(**fields, **optional)


def efficiency_for(kind: str, path: Path | None = None) -> Efficiency:
    """One engine kind's parameters, or UnknownId naming the nearest kinds."""
    table = load_efficiencies(path)
    if kind not in table:
        raise UnknownId("engine kind", kind, table)
    return table[kind]
