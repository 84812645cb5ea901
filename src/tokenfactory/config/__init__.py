"""Scenario file schemas, loading and errors that name the file, line and key."""

from tokenfactory.config.load import LoadedScenario, load_scenario, load_scenario_text
from tokenfactory.config.locate import Located, TablePath, label, split_path
from tokenfactory.config.scenario import (
    AgentsSpec,
    EconomicsSpec,
    EngineSpec,
    HardwareSpec,
    ListPrices,
    MixShare,
    ModelSpec,
    PricesSpec,
    Scenario,
    SchedulerSpec,
    SessionsSpec,
    TierOverride,
    WorkloadSpec,
)

__all__ = [
    "AgentsSpec",
    "EconomicsSpec",
    "EngineSpec",
    "HardwareSpec",
    "ListPrices",
    "LoadedScenario",
    "Located",
    "MixShare",
    "ModelSpec",
    "PricesSpec",
    "Scenario",
    "SchedulerSpec",
    "SessionsSpec",
    "TablePath",
    "TierOverride",
    "WorkloadSpec",
    "label",
    "load_scenario",
    "load_scenario_text",
    "split_path",
]
