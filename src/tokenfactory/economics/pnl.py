"""The production function: an operating point of a set of GPUs and what it earns.

cost per 1M tokens = $/GPU-hour / (tok/s per GPU x utilisation x 3600 / 1e6)
tok/s per MW       = tok/s per GPU x 1000 / kW per GPU
Both are InferenceMAX's formulas (at utilisation 1); tokens are output tokens.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from decimal import Decimal

from tokenfactory.economics.hardware import Hardware
from tokenfactory.economics.revenue import Prices, revenue
from tokenfactory.economics.units import MILLION, SECONDS_PER_HOUR, dec


@dataclass(frozen=True, slots=True)
class OperatingPoint:
    """GPUs, how fast they make tokens when busy, and how busy demand keeps them."""

    gpus: int
    tokens_per_s_per_gpu: float
    utilization: float = 1.0
    input_per_output: float = 1.0
    cached_share: float = 0.0

    def output_tokens_per_hour(self) -> float:
        """Output tokens the whole set makes in an hour at this utilisation."""
        return self.tokens_per_s_per_gpu * self.gpus * self.utilization * SECONDS_PER_HOUR


@dataclass(frozen=True, slots=True)
class Factory:
    """Everything the P&L needs: hardware, operating point and prices (if sold)."""

    hardware: Hardware
    point: OperatingPoint
    prices: Prices | None = None

    def at_utilization(self, utilization: float) -> Factory:
        """The same factory kept busy a different share of the time."""
        return replace(self, point=replace(self.point, utilization=utilization))


@dataclass(frozen=True, slots=True)
class PnL:
    """Cost, production and, when prices are known, revenue and profit per hour."""

    cost_per_hour: Decimal
    energy_kw: float
    cost_per_million_tokens: Decimal
    tokens_per_mw: float
    joules_per_token: float
    revenue_per_hour: Decimal | None
    profit_per_hour: Decimal | None
    margin: Decimal | None
    break_even_price_ratio: Decimal | None
    break_even_utilization: float | None


def cost_per_million_tokens(cost_per_hour: Decimal, tokens_per_hour: float) -> Decimal:
    """Cost of one million tokens at a production rate."""
    if tokens_per_hour <= 0:
        raise ValueError("production must be positive")
    return cost_per_hour / (dec(tokens_per_hour) / MILLION)


def tokens_per_mw(tokens_per_s_per_gpu: float, kw_per_gpu: float) -> float:
    """Tokens per second per megawatt of provisioned all-in power."""
    return tokens_per_s_per_gpu * 1000 / kw_per_gpu


def joules_per_token(kw: float, tokens_per_s: float) -> float:
    """Energy drawn from the grid per token made."""
    return kw * 1000 / tokens_per_s


def cost_per_hour(factory: Factory) -> Decimal:
    """What the whole set of GPUs costs per hour at its utilisation."""
    point = factory.point
    return factory.hardware.cost_per_gpu_hour(point.utilization) * point.gpus


def revenue_per_hour(factory: Factory) -> Decimal | None:
    """What an hour's tokens earn, or None when the factory has no prices."""
    if factory.prices is None:
        return None
    point = factory.point
    output = point.output_tokens_per_hour()
    inputs = output * point.input_per_output
    return revenue(factory.prices, inputs, inputs * point.cached_share, output)


def evaluate(factory: Factory) -> PnL:
    """The factory's P&L per hour at its operating point."""
    point, power = factory.point, factory.hardware.power
    cost = cost_per_hour(factory)
    earned = revenue_per_hour(factory)
    profit = None if earned is None else earned - cost
    grid_kw = power.facility_kw(point.utilization) * point.gpus
    return PnL(
        cost_per_hour=cost,
        energy_kw=grid_kw,
        cost_per_million_tokens=cost_per_million_tokens(cost, point.output_tokens_per_hour()),
        tokens_per_mw=tokens_per_mw(point.tokens_per_s_per_gpu, power.peak_kw * power.pue),
        joules_per_token=joules_per_token(
            grid_kw, point.tokens_per_s_per_gpu * point.gpus * point.utilization
        ),
        revenue_per_hour=earned,
        profit_per_hour=profit,
        margin=None if not earned or profit is None else profit / earned,
        break_even_price_ratio=None if not earned else cost / earned,
        break_even_utilization=break_even_utilization(factory),
    )


def break_even_utilization(factory: Factory) -> float | None:
    """The utilisation at which revenue pays the cost, or None if none in (0, 1] does.

    Revenue is linear in utilisation and so is cost (energy rises with load), so the
    crossing is found from the two ends.
    """
    if factory.prices is None:
        return None
    idle, full = factory.at_utilization(0.0), factory.at_utilization(1.0)
    fixed = cost_per_hour(idle)
    slope = (revenue_per_hour(full) or Decimal(0)) - (cost_per_hour(full) - fixed)
    if slope <= 0:
        return None
    u = float(fixed / slope)
    return u if u <= 1 else None
