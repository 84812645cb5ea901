"""What tokens earn: prices per 1M tokens by kind, and revenue for a count of tokens."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from tokenfactory.catalog import Model, Tier
from tokenfactory.economics.units import MILLION, dec


@dataclass(frozen=True, slots=True)
class Prices:
    """USD per 1M tokens for input, cached input and output."""

    input: Decimal
    cached_input: Decimal
    output: Decimal

    @classmethod
    def for_tier(cls, model: Model, tier: Tier) -> Prices:
        """A model's list prices at a tier's price ratio."""
        return cls(model.price_in, model.price_cached_in, model.price_out).scaled(tier.price_ratio)

    def scaled(self, ratio: Decimal) -> Prices:
        """Every price multiplied by `ratio`."""
        return Prices(self.input * ratio, self.cached_input * ratio, self.output * ratio)


def revenue(
    prices: Prices,
    input_tokens: float | int,
    cached_tokens: float | int,
    output_tokens: float | int,
) -> Decimal:
    """Revenue for tokens counted as OpenAI does: input includes its cached part."""
    if not 0 <= cached_tokens <= input_tokens:
        raise ValueError("cached tokens must be between 0 and the input tokens")
    uncached = dec(input_tokens) - dec(cached_tokens)
    return (
        uncached * prices.input
        + dec(cached_tokens) * prices.cached_input
        + dec(output_tokens) * prices.output
    ) / MILLION
