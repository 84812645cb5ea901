"""Money and energy: cost rates, production, revenue, P&L and scenarios."""

from tokenfactory.economics.hardware import Hardware, Owned, Power, Rented
from tokenfactory.economics.pnl import (
    Factory,
    OperatingPoint,
    PnL,
    cost_per_million_tokens,
    evaluate,
    joules_per_token,
    tokens_per_mw,
)
from tokenfactory.economics.revenue import Prices, revenue
from tokenfactory.economics.scenarios import SCENARIOS, ScenarioResult, run_scenarios

__all__ = [
    "SCENARIOS",
    "Factory",
    "Hardware",
    "OperatingPoint",
    "Owned",
    "PnL",
    "Power",
    "Prices",
    "Rented",
    "ScenarioResult",
    "cost_per_million_tokens",
    "evaluate",
    "joules_per_token",
    "revenue",
    "run_scenarios",
    "tokens_per_mw",
]
