"""Risks as numbers: move one input at a time and report the change in profit."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from decimal import Decimal

from tokenfactory.economics.hardware import Owned, Rented
from tokenfactory.economics.pnl import Factory, evaluate


@dataclass(frozen=True, slots=True)
class Scenario:
    """A named change to one input of the factory."""

    name: str
    apply: Callable[[Factory], Factory]


@dataclass(frozen=True, slots=True)
class ScenarioResult:
    """A scenario's profit per hour, and its change against the base case."""

    name: str
    profit_per_hour: Decimal
    change_per_hour: Decimal
    change_share: Decimal | None


def _prices(ratio: str) -> Callable[[Factory], Factory]:
    def apply(f: Factory) -> Factory:
        assert f.prices is not None
        return replace(f, prices=f.prices.scaled(Decimal(ratio)))

    return apply


def _electricity(ratio: str) -> Callable[[Factory], Factory]:
    """Owners pay it directly; a renter's price moves only when the cloud reprices."""

    def apply(f: Factory) -> Factory:
        hw = f.hardware
        if isinstance(hw, Rented):
            return f
        return replace(
            f, hardware=replace(hw, electricity_per_kwh=hw.electricity_per_kwh * Decimal(ratio))
        )

    return apply


def _hardware_price(ratio: str) -> Callable[[Factory], Factory]:
    def apply(f: Factory) -> Factory:
        hw = f.hardware
        moved: Owned | Rented = (
            replace(hw, capex_per_gpu=hw.capex_per_gpu * Decimal(ratio))
            if isinstance(hw, Owned)
            else replace(hw, rent_per_gpu_hour=hw.rent_per_gpu_hour * Decimal(ratio))
        )
        return replace(f, hardware=moved)

    return apply


def _throughput(ratio: float) -> Callable[[Factory], Factory]:
    def apply(f: Factory) -> Factory:
        point = replace(f.point, tokens_per_s_per_gpu=f.point.tokens_per_s_per_gpu * ratio)
        return replace(f, point=point)

    return apply


def _demand(ratio: float) -> Callable[[Factory], Factory]:
    """Demand moves utilisation; the GPUs cannot be busier than all the time."""

    def apply(f: Factory) -> Factory:
        return f.at_utilization(min(1.0, f.point.utilization * ratio))

    return apply


SCENARIOS: tuple[Scenario, ...] = (
    Scenario("token price -50%", _prices("0.5")),
    Scenario("electricity +30%", _electricity("1.3")),
    Scenario("hardware price +25%", _hardware_price("1.25")),
    Scenario("model 2x more efficient (tokens/s x2)", _throughput(2.0)),
    Scenario("agents double demand (utilisation x2, at most 1)", _demand(2.0)),
    Scenario("demand -50% (utilisation x0.5)", _demand(0.5)),
)


def run_scenarios(factory: Factory) -> list[ScenarioResult]:
    """Every scenario against the base case, largest profit change first."""
    if factory.prices is None:
        raise ValueError("scenarios need prices")
    base = evaluate(factory).profit_per_hour
    assert base is not None
    results = []
    for scenario in SCENARIOS:
        profit = evaluate(scenario.apply(factory)).profit_per_hour
        assert profit is not None
        change = profit - base
        share = change / abs(base) if base else None
        results.append(ScenarioResult(scenario.name, profit, change, share))
    return sorted(results, key=lambda r: abs(r.change_per_hour), reverse=True)
