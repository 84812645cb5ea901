"""Tier mix: which service tier each request (or session) asks for."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from tokenfactory.errors import BadInput
from tokenfactory.workload.checks import unknown_name
from tokenfactory.workload.request import TIERS


class TierMix:
    """Shares of demand per tier; the shares are > 0 and sum to 1."""

    __slots__ = ("_p", "tiers")

    def __init__(self, shares: Sequence[tuple[str, float]] = (("standard", 1.0),)) -> None:
        if not shares:
            raise BadInput("tier mix: no tiers given")
        seen: set[str] = set()
        for tier, share in shares:
            if tier not in TIERS:
                raise unknown_name("tier mix", "tier", tier, TIERS)
            if tier in seen:
                raise BadInput(f"tier mix: tier {tier!r} given twice")
            seen.add(tier)
            if not (math.isfinite(share) and share > 0):
                raise BadInput(f"tier mix: share of {tier!r} must be > 0, got {share}")
        total = math.fsum(s for _, s in shares)
        if abs(total - 1.0) > 1e-6:
            raise BadInput(f"tier mix: shares sum to {total:g}, expected 1")
        self.tiers: tuple[str, ...] = tuple(t for t, _ in shares)
        # Renormalise so rounding within the tolerance does not upset numpy's check.
        self._p = np.asarray([s for _, s in shares], dtype=np.float64) / total

    @property
    def shares(self) -> dict[str, float]:
        """Share per tier, in the order given."""
        return {t: float(p) for t, p in zip(self.tiers, self._p, strict=True)}

    def sample(self, rng: np.random.Generator, n: int) -> list[str]:
        """`n` tiers drawn independently by share."""
        if len(self.tiers) == 1:
            return [self.tiers[0]] * n  # no draw: a single tier leaves the random stream alone
        picks = rng.choice(len(self.tiers), size=n, p=self._p)
        names = np.asarray(self.tiers, dtype=object)
        return list(names[picks])

    def __repr__(self) -> str:
        return f"TierMix({list(self.shares.items())!r})"
