"""Length distributions: how many tokens (or seconds) a field takes, drawn in bulk.

Every distribution has `sample(rng, n)` (whole numbers, rounded then clipped to its
bounds), `sample_float(rng, n)` (the same draw unrounded, for seconds such as think time),
`mean` (the configured mean, before clipping and rounding) and bounds `low` / `high`.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from tokenfactory.errors import BadInput
from tokenfactory.workload.checks import nearest, unknown_name

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]


class Length(Protocol):
    """A distribution of non-negative lengths."""

    @property
    def mean(self) -> float: ...
    @property
    def low(self) -> float: ...
    @property
    def high(self) -> float: ...
    def sample(self, rng: np.random.Generator, n: int) -> IntArray: ...
    def sample_float(self, rng: np.random.Generator, n: int) -> FloatArray: ...


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise BadInput(message)


def _bounds(name: str, lo: float, hi: float) -> None:
    _check(math.isfinite(lo) and lo >= 0, f"{name}: min must be >= 0, got {lo}")
    _check(not math.isnan(hi) and hi >= lo, f"{name}: max ({hi}) must be >= min ({lo})")


def _positive(name: str, key: str, value: float) -> None:
    _check(math.isfinite(value) and value > 0, f"{name}: {key} must be > 0, got {value}")


class _Clipped(ABC):
    """Shared sampling: one vectorised float draw per call, clipped to [low, high]."""

    __slots__ = ()
    min: float
    max: float

    @property
    def low(self) -> float:
        """Smallest value a sample can take."""
        return float(self.min)

    @property
    def high(self) -> float:
        """Largest value a sample can take."""
        return float(self.max)

    @abstractmethod
    def _draw(self, rng: np.random.Generator, n: int) -> FloatArray:
        """`n` raw draws of the distribution, before clipping."""

    def sample_float(self, rng: np.random.Generator, n: int) -> FloatArray:
        """`n` draws, clipped to [low, high]."""
        return np.clip(self._draw(rng, n), self.low, self.high)

    def sample(self, rng: np.random.Generator, n: int) -> IntArray:
        """`n` draws rounded to whole numbers, clipped to [low, high]."""
        lo, hi = math.ceil(self.low), self.high
        hi = math.floor(hi) if math.isfinite(hi) else hi
        return np.clip(np.rint(self._draw(rng, n)), lo, hi).astype(np.int64)


@dataclass(frozen=True, slots=True)
class Fixed(_Clipped):
    """Always `n`."""

    n: float

    def __post_init__(self) -> None:
        _check(math.isfinite(self.n) and self.n >= 0, f"fixed: n must be >= 0, got {self.n}")

    @property
    def mean(self) -> float:
        return float(self.n)

    @property
    def low(self) -> float:
        return float(self.n)

    @property
    def high(self) -> float:
        return float(self.n)

    def _draw(self, rng: np.random.Generator, n: int) -> FloatArray:
        # No rng call: a fixed field leaves the random stream of the other fields unchanged.
        return np.full(n, float(self.n))


@dataclass(frozen=True, slots=True)
class LogNormal(_Clipped):
    """Log-normal with the given mean and coefficient of variation, clipped to [min, max]."""

    mean: float
    max: float
    cv: float = 1.0
    min: float = 1

    def __post_init__(self) -> None:
        _positive("lognormal", "mean", self.mean)
        _check(
            math.isfinite(self.cv) and self.cv >= 0, f"lognormal: cv must be >= 0, got {self.cv}"
        )
        _bounds("lognormal", self.min, self.max)

    def _draw(self, rng: np.random.Generator, n: int) -> FloatArray:
        # Moments of the underlying normal from the log-normal's mean m and cv c:
        # sigma^2 = ln(1 + c^2), mu = ln m - sigma^2 / 2.
        var = math.log1p(self.cv**2)
        return rng.lognormal(math.log(self.mean) - var / 2, math.sqrt(var), n)


@dataclass(frozen=True, slots=True)
class Uniform(_Clipped):
    """Uniform on [min, max]; whole-number samples take each integer equally often."""

    min: float
    max: float

    def __post_init__(self) -> None:
        _bounds("uniform", self.min, self.max)
        _check(math.isfinite(self.max), f"uniform: max must be finite, got {self.max}")

    @property
    def mean(self) -> float:
        return (self.min + self.max) / 2

    def _draw(self, rng: np.random.Generator, n: int) -> FloatArray:
        return rng.uniform(self.min, self.max, n)

    def sample(self, rng: np.random.Generator, n: int) -> IntArray:
        """`n` whole numbers, each integer in [min, max] equally likely."""
        # Rounding a float draw would give the two end values half weight.
        return rng.integers(math.ceil(self.min), math.floor(self.max), n, endpoint=True)


@dataclass(frozen=True, slots=True)
class Exponential(_Clipped):
    """Exponential with the given mean, clipped to [min, max]."""

    mean: float
    max: float
    min: float = 1

    def __post_init__(self) -> None:
        _positive("exponential", "mean", self.mean)
        _bounds("exponential", self.min, self.max)

    def _draw(self, rng: np.random.Generator, n: int) -> FloatArray:
        return rng.exponential(self.mean, n)


@dataclass(frozen=True, slots=True)
class Normal(_Clipped):
    """Normal with the given mean and standard deviation, clipped to [min, max]."""

    mean: float
    std: float
    min: float
    max: float

    def __post_init__(self) -> None:
        _check(math.isfinite(self.mean), f"normal: mean must be finite, got {self.mean}")
        _check(
            math.isfinite(self.std) and self.std >= 0, f"normal: std must be >= 0, got {self.std}"
        )
        _bounds("normal", self.min, self.max)

    def _draw(self, rng: np.random.Generator, n: int) -> FloatArray:
        return rng.normal(self.mean, self.std, n)


@dataclass(frozen=True, slots=True)
class Choice(_Clipped):
    """One of `values`, with probabilities proportional to `weights` (equal if omitted)."""

    values: tuple[float, ...]
    weights: tuple[float, ...] | None = None

    def __init__(self, values: Sequence[float], weights: Sequence[float] | None = None) -> None:
        vals = tuple(float(v) for v in values)
        _check(len(vals) > 0, "choice: values must not be empty")
        _check(
            all(math.isfinite(v) and v >= 0 for v in vals),
            f"choice: values must be >= 0, got {vals}",
        )
        ws = None if weights is None else tuple(float(w) for w in weights)
        if ws is not None:
            _check(len(ws) == len(vals), f"choice: {len(vals)} values but {len(ws)} weights")
            _check(
                all(math.isfinite(w) and w > 0 for w in ws),
                f"choice: weights must be > 0, got {ws}",
            )
        object.__setattr__(self, "values", vals)
        object.__setattr__(self, "weights", ws)

    def _p(self) -> FloatArray:
        w = np.asarray(self.weights or [1.0] * len(self.values), dtype=np.float64)
        p: FloatArray = w / w.sum()
        return p

    @property
    def mean(self) -> float:
        return float(np.dot(self.values, self._p()))

    @property
    def low(self) -> float:
        return float(np.min(self.values))

    @property
    def high(self) -> float:
        return float(np.max(self.values))

    def _draw(self, rng: np.random.Generator, n: int) -> FloatArray:
        return np.asarray(rng.choice(np.asarray(self.values), size=n, p=self._p()), np.float64)


def as_length(value: float | Length) -> Length:
    """`value` itself if it is a distribution, else Fixed(value)."""
    return Fixed(value) if isinstance(value, int | float) else value


# Per dist: (required keys, optional keys); keys are the constructors' argument names.
_SPECS: dict[str, tuple[type[Length], tuple[str, ...], tuple[str, ...]]] = {
    "fixed": (Fixed, ("n",), ()),
    "lognormal": (LogNormal, ("mean", "max"), ("cv", "min")),
    "uniform": (Uniform, ("min", "max"), ()),
    "exponential": (Exponential, ("mean", "max"), ("min",)),
    "normal": (Normal, ("mean", "std", "min", "max"), ()),
    "choice": (Choice, ("values",), ("weights",)),
}


_LISTS = ("values", "weights")


def _number(value: object, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadInput(f"{where}: expected a number, got {value!r}", param=where)
    return value


def _numbers(value: object, where: str) -> list[float]:
    if not isinstance(value, list | tuple):
        raise BadInput(f"{where}: expected a list of numbers, got {value!r}", param=where)
    return [_number(v, f"{where}[{i}]") for i, v in enumerate(value)]


def parse_length(spec: float | dict[str, object], where: str) -> Length:
    """A distribution from `300` or `{dist = "lognormal", mean = 300, max = 1024}`."""
    if not isinstance(spec, dict):
        return _build(Fixed, {"n": _number(spec, where)}, where)
    name = spec.get("dist")
    if not isinstance(name, str):
        raise BadInput(f"{where}: missing 'dist' (one of {', '.join(_SPECS)})", param=where)
    if name not in _SPECS:
        raise unknown_name(where, "dist", name, _SPECS)
    cls, required, optional = _SPECS[name]
    for key in spec:
        if key != "dist" and key not in required + optional:
            hint = nearest(key, (*required, *optional))
            raise BadInput(f"{where}: unknown key {key!r} for dist {name!r}; {hint}", param=where)
    missing = [k for k in required if k not in spec]
    if missing:
        raise BadInput(f"{where}: dist {name!r} needs {', '.join(missing)}", param=where)
    args = {
        k: _numbers(v, f"{where}.{k}") if k in _LISTS else _number(v, f"{where}.{k}")
        for k, v in spec.items()
        if k != "dist"
    }
    return _build(cls, args, where)


def _build(cls: type[Length], args: Mapping[str, object], where: str) -> Length:
    try:
        return cls(**args)
    except BadInput as e:
        # The constructor's message names the dist; prefix where in the config it came from.
        raise BadInput(f"{where}: {e.message}", param=where) from e
