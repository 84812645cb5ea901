"""Predicted beside measured: the figures a simulation and a bench run have in common."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tokenfactory.workload import TIERS

# (label, path into a summary); the simulator's and bench's summaries share these keys.
FIGURES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("requests completed", ("requests_completed",)),
    ("output tokens/s", ("output_tokens_per_s",)),
    ("input tokens/s", ("input_tokens_per_s",)),
    ("TTFT p50 ms", ("ttft_ms", "p50")),
    ("TTFT p90 ms", ("ttft_ms", "p90")),
    ("TTFT p99 ms", ("ttft_ms", "p99")),
    ("TPOT p50 ms", ("tpot_ms", "p50")),
    ("TPOT p90 ms", ("tpot_ms", "p90")),
    ("TPOT p99 ms", ("tpot_ms", "p99")),
    ("E2E p50 ms", ("e2e_ms", "p50")),
    ("E2E p99 ms", ("e2e_ms", "p99")),
)
TIER_FIGURES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("requests completed", ("requests_completed",)),
    ("TTFT p99 ms", ("ttft_ms", "p99")),
    ("TPOT p50 ms", ("tpot_ms", "p50")),
    ("SLO attainment", ("slo_attainment",)),
    ("goodput tokens/s", ("goodput_tokens_per_s",)),
)


@dataclass(frozen=True, slots=True)
class Row:
    """One figure, predicted and measured."""

    figure: str
    predicted: float
    measured: float

    @property
    def difference(self) -> float | None:
        """Measured relative to predicted (measured / predicted - 1); None when predicted is 0."""
        return None if self.predicted == 0 else self.measured / self.predicted - 1

    def to_json(self) -> dict[str, Any]:
        """The row as JSON."""
        return {
            "figure": self.figure,
            "predicted": self.predicted,
            "measured": self.measured,
            "difference": self.difference,
        }


def _get(summary: Mapping[str, Any], path: tuple[str, ...]) -> float | None:
    value: Any = summary
    for key in path:
        if not isinstance(value, Mapping) or key not in value:
            return None
        value = value[key]
    return float(value) if isinstance(value, int | float) else None


def _rows(
    predicted: Mapping[str, Any],
    measured: Mapping[str, Any],
    figures: tuple[tuple[str, tuple[str, ...]], ...],
    prefix: str,
) -> list[Row]:
    out = []
    for label, path in figures:
        p, m = _get(predicted, path), _get(measured, path)
        if p is not None and m is not None:
            out.append(Row(prefix + label, p, m))
    return out


def compare(predicted: Mapping[str, Any], measured: Mapping[str, Any]) -> list[Row]:
    """Every figure both summaries have, overall then per tier."""
    rows = _rows(predicted, measured, FIGURES, "")
    for tier in TIERS:
        p, m = predicted["per_tier"].get(tier), measured["per_tier"].get(tier)
        if p is not None and m is not None:
            rows += _rows(p, m, TIER_FIGURES, f"{tier}: ")
    return rows
