"""Published (or the user's own) measurements of real engines, to fit the model on.

One `[[m]]` table per measurement, as in shared/calibration/measurements.toml: the
conditions (GPU, model, precision, engine, tensor parallel, arrival, lengths) and what
was measured (output tok/s, and for served loads TTFT / TPOT in ms).
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from tokenfactory.errors import ConfigError


@dataclass(frozen=True, slots=True)
class Measurement:
    """One measured operating point of one engine deployment."""

    row: int
    source: str
    gpu: str
    gpus: int
    tensor_parallel: int
    model: str
    precision: str
    engine: str
    arrival: str
    input_tokens: int  # fixed length, or the cap of a distribution
    output_tokens: int  # fixed length, or the mean of a distribution
    fixed_lengths: bool
    output_tokens_per_s: float
    requests: int | None = None
    qps: float | None = None
    max_num_seqs: int | None = None
    input_tokens_mean: float | None = None  # a distribution's mean input, where published
    kv_memory: float | None = None  # the engine's KV share of memory, where it was not the default
    ttft_ms_mean: float | None = None
    tpot_ms_mean: float | None = None
    overlap_scheduling: bool = True  # False: the engine ran its host work between GPU steps

    @property
    def label(self) -> str:
        """A short name for tables."""
        shape = f"{self.input_tokens}/{self.output_tokens}"
        if not self.fixed_lengths:
            shape = f"<={self.input_tokens}/~{self.output_tokens}"
        load = self.arrival if self.qps is None else f"{self.qps:g} qps"
        hardware = f"{self.gpus}x{self.gpu} TP{self.tensor_parallel}"
        return f"{self.model} {self.precision} {hardware} {shape} {load}"


def builtin_measurements_path() -> Path:
    """The calibration set shipped with tokenfactory."""
    data = resources.files("tokenfactory.perf").joinpath("data", "measurements.toml")
    return Path(str(data))


def load_measurements(path: Path | None = None) -> list[Measurement]:
    """Every measurement in a file; a bad row is named with its number."""
    where = path or builtin_measurements_path()
    try:
        rows = tomllib.loads(_one_key_per_line(where.read_text())).get("m", [])
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"{where}: cannot read measurements: {e}") from None
    if not rows:
        raise ConfigError(f"{where}: no [[m]] measurements")
    return [_measurement(i, row, where) for i, row in enumerate(rows, start=1)]


def _one_key_per_line(text: str) -> str:
    """The calibration file writes `a = 1; b = 2` on one line, which TOML does not allow."""
    return _SEPARATOR.sub("\n", text)


_SEPARATOR = re.compile(r";\s*(?=[A-Za-z_][A-Za-z0-9_]*\s*=)")


def _measurement(i: int, row: dict[str, Any], where: Path) -> Measurement:
    try:
        fixed = "input_tokens" in row
        return Measurement(
            row=i,
            source=str(row.get("source", "")),
            gpu=row["gpu"],
            gpus=int(row["gpus"]),
            tensor_parallel=int(row.get("tensor_parallel", 1)),
            model=row["model"],
            precision=row["precision"],
            engine=row["engine"],
            arrival=row["arrival"],
            input_tokens=int(row["input_tokens"] if fixed else row["input_tokens_max"]),
            output_tokens=int(row["output_tokens"] if fixed else round(row["output_tokens_mean"])),
            fixed_lengths=fixed,
            output_tokens_per_s=float(row["output_tokens_per_s"]),
            requests=row.get("requests"),
            qps=row.get("qps"),
            max_num_seqs=row.get("max_num_seqs"),
            input_tokens_mean=row.get("input_tokens_mean"),
            kv_memory=row.get("kv_memory"),
            ttft_ms_mean=row.get("ttft_ms_mean"),
            tpot_ms_mean=row.get("tpot_ms_mean"),
            overlap_scheduling=bool(row.get("overlap_scheduling", True)),
        )
    except KeyError as e:
        raise ConfigError(f"{where}: measurement {i}: missing key {e.args[0]!r}") from None
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where}: measurement {i}: {e}") from None
