from __future__ import annotations

import numpy as np
import pytest

from tokenfactory.errors import BadInput
from tokenfactory.workload import TierMix


def test_default_is_all_standard() -> None:
    assert TierMix().sample(np.random.default_rng(0), 5) == ["standard"] * 5


def test_samples_follow_shares() -> None:
    mix = TierMix([("realtime", 0.1), ("standard", 0.6), ("batch", 0.3)])
    tiers = mix.sample(np.random.default_rng(1), 100_000)
    assert all(isinstance(t, str) for t in tiers[:10])
    for tier, share in mix.shares.items():
        assert tiers.count(tier) / len(tiers) == pytest.approx(share, abs=0.01)
    assert "flex" not in tiers


def test_same_seed_same_tiers() -> None:
    mix = TierMix([("flex", 0.5), ("standard", 0.5)])
    a = mix.sample(np.random.default_rng(3), 1000)
    assert a == mix.sample(np.random.default_rng(3), 1000)
    assert a != mix.sample(np.random.default_rng(4), 1000)


def test_shares_within_tolerance_of_one_are_accepted() -> None:
    TierMix([("realtime", 1 / 3), ("standard", 1 / 3), ("flex", 1 / 3 + 5e-7)])


@pytest.mark.parametrize(
    ("shares", "message"),
    [
        ([("realtime", 0.5), ("standard", 0.4)], "sum to 0.9"),
        ([("realtime", 0.5), ("standard", 0.5 + 1e-5)], "sum to"),
        ([("realtime", 0.0), ("standard", 1.0)], "must be > 0"),
        ([("realtime", -0.5), ("standard", 1.5)], "must be > 0"),
        ([("standard", 0.5), ("standard", 0.5)], "given twice"),
        ([("premium", 1.0)], "unknown tier 'premium'"),
        ([("standrd", 1.0)], "did you mean 'standard'"),
        ([], "no tiers"),
    ],
)
def test_bad_mix_is_refused(shares: list[tuple[str, float]], message: str) -> None:
    with pytest.raises(BadInput, match=message):
        TierMix(shares)
