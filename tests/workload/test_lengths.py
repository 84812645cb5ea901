from __future__ import annotations

import numpy as np
import pytest

from tokenfactory.errors import BadInput
from tokenfactory.workload import (
    Choice,
    Exponential,
    Fixed,
    Length,
    LogNormal,
    Normal,
    Uniform,
    parse_length,
)

N = 200_000

# Bounds wide enough that clipping barely moves the mean.
DISTS: list[Length] = [
    Fixed(300),
    LogNormal(300, 1_000_000),
    LogNormal(300, 1_000_000, cv=0.3),
    Uniform(10, 90),
    Exponential(200, 1_000_000, min=0),
    Normal(500, 50, 0, 10_000),
    Choice([100, 1000], [3, 1]),
]


@pytest.mark.parametrize("dist", DISTS, ids=repr)
def test_sample_mean_matches_configured_mean(dist: Length) -> None:
    x = dist.sample(np.random.default_rng(0), N)
    assert x.dtype == np.int64 and x.shape == (N,)
    assert x.mean() == pytest.approx(dist.mean, rel=0.02)


@pytest.mark.parametrize("dist", DISTS, ids=repr)
def test_same_seed_same_samples(dist: Length) -> None:
    a = dist.sample(np.random.default_rng(7), 1000)
    b = dist.sample(np.random.default_rng(7), 1000)
    assert np.array_equal(a, b)
    if not isinstance(dist, Fixed):
        assert not np.array_equal(a, dist.sample(np.random.default_rng(8), 1000))


def test_lognormal_cv_is_the_spread() -> None:
    x = LogNormal(1000, 1e9, cv=0.5).sample_float(np.random.default_rng(1), N)
    assert x.std() / x.mean() == pytest.approx(0.5, rel=0.05)


@pytest.mark.parametrize(
    "dist",
    [
        LogNormal(300, 400, cv=2.0, min=50),
        Exponential(300, 350, min=20),
        Normal(100, 80, 10, 150),
        Uniform(3, 7),
    ],
    ids=repr,
)
def test_samples_stay_within_min_and_max(dist: Length) -> None:
    x = dist.sample(np.random.default_rng(2), N)
    assert x.min() >= dist.low and x.max() <= dist.high
    # The tails are heavy enough that both bounds are actually hit.
    assert x.min() == dist.low and x.max() == dist.high


def test_uniform_gives_every_integer_equal_weight() -> None:
    x = Uniform(1, 4).sample(np.random.default_rng(3), N)
    counts = np.bincount(x, minlength=5)[1:]
    assert counts == pytest.approx([N / 4] * 4, rel=0.03)


def test_choice_follows_weights() -> None:
    x = Choice([1, 2, 3], [0.2, 0.3, 0.5]).sample(np.random.default_rng(4), N)
    assert sorted(set(x.tolist())) == [1, 2, 3]
    assert (x == 3).mean() == pytest.approx(0.5, abs=0.01)


def test_sample_float_keeps_fractions_for_seconds() -> None:
    x = Exponential(2.5, 30, min=0).sample_float(np.random.default_rng(5), N)
    assert x.dtype == np.float64
    assert not np.all(x == np.rint(x))
    assert x.min() >= 0 and x.max() <= 30
    assert x.mean() == pytest.approx(2.5, rel=0.02)


@pytest.mark.parametrize(
    "make",
    [
        lambda: LogNormal(300, 100, min=200),
        lambda: LogNormal(-1, 100),
        lambda: LogNormal(300, 1000, cv=-1),
        lambda: Exponential(0, 10),
        lambda: Normal(10, -1, 0, 20),
        lambda: Uniform(-1, 5),
        lambda: Fixed(-2),
        lambda: Choice([]),
        lambda: Choice([1, 2], [1]),
        lambda: Choice([1, 2], [1, 0]),
    ],
)
def test_bad_parameters_are_refused(make: object) -> None:
    with pytest.raises(BadInput):
        make()  # type: ignore[operator]


def test_parse_plain_number_is_fixed() -> None:
    assert parse_length(300, "workload.input") == Fixed(300)


def test_parse_dict_builds_the_named_distribution() -> None:
    spec: dict[str, object] = {"dist": "lognormal", "mean": 300, "max": 1024, "cv": 0.5}
    assert parse_length(spec, "w") == LogNormal(300, 1024, cv=0.5)
    choice = parse_length({"dist": "choice", "values": [1, 2], "weights": [1, 3]}, "w")
    assert choice == Choice([1, 2], [1, 3])


def test_parse_unknown_dist_names_where_and_nearest() -> None:
    with pytest.raises(BadInput, match=r"workload\.input: unknown dist 'lognorm'.*'lognormal'"):
        parse_length({"dist": "lognorm", "mean": 3, "max": 9}, "workload.input")


def test_parse_unknown_key_names_where_and_nearest() -> None:
    with pytest.raises(BadInput, match=r"workload\.output: unknown key 'mx'.*'max'"):
        parse_length({"dist": "lognormal", "mean": 3, "mx": 9}, "workload.output")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"mean": 3}, "missing 'dist'"),
        ({"dist": "exponential", "mean": 3}, "needs max"),
        ({"dist": "uniform", "min": "a", "max": 3}, r"w\.min: expected a number"),
        ({"dist": "lognormal", "mean": 300, "max": 10, "min": 20}, "must be >= min"),
        ({"dist": "choice", "values": 3}, "expected a list"),
        (True, "expected a number"),
        (-5, "must be >= 0"),
    ],
)
def test_parse_errors_name_where(spec: object, message: str) -> None:
    with pytest.raises(BadInput, match=message) as e:
        parse_length(spec, "w")  # type: ignore[arg-type]
    assert e.value.message.startswith("w")
