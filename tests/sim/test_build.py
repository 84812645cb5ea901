"""From a scenario file to a `Setup`: every knob lands where the simulator reads it."""

from __future__ import annotations

import math

import pytest

from tokenfactory.catalog import Catalog
from tokenfactory.config import LoadedScenario, load_scenario_text
from tokenfactory.economics.units import HOURS_PER_YEAR
from tokenfactory.errors import ConfigError
from tokenfactory.sim.build import build
from tokenfactory.sim.run import Setup, simulate

SCENARIO = """\
[hardware]
gpu = "H100-SXM"
gpus = 2
[model]
name = "llama-3.1-8b"
precision = "bf16"
[engine]
kind = "vllm"
max_num_seqs = 64
[workload]
arrival = "poisson"
qps = 20.0
requests = 60
input_tokens = 500
output_tokens = 50
seed = 3
[[workload.mix]]
tier = "realtime"
share = 0.5
[[workload.mix]]
tier = "flex"
share = 0.5
[tiers.realtime]
ttft_ms = 300
[prices]
input = 1.0
cached_input = 0.5
output = 3.0
[economics]
rent_per_gpu_hour = 3.0
"""


def load(catalog: Catalog, text: str = SCENARIO) -> LoadedScenario:
    return load_scenario_text(text, "scenario.toml", catalog)


def test_the_scenario_lands_in_the_setup(catalog: Catalog) -> None:
    setup, _ = build(load(catalog), catalog)
    assert setup.replicas == 2
    assert setup.deployment.model.id == "llama-3.1-8b" and setup.deployment.precision == "bf16"
    engine = catalog.engine("vllm")
    assert setup.limits.max_num_seqs == 64  # given
    assert setup.limits.max_batched_tokens == engine.max_batched_tokens  # the engine's default
    assert setup.limits.block_size == engine.block_size
    assert (setup.policy, setup.router) == ("fcfs", "least_load")
    tiers = setup.tiers
    assert [tiers[n].rank for n in ("realtime", "standard", "flex", "batch")] == [0, 1, 2, 3]
    assert tiers["realtime"].ttft_s == pytest.approx(0.3)  # overridden
    assert tiers["realtime"].tpot_s == pytest.approx(catalog.tier("realtime").tpot_ms / 1000)
    assert tiers["flex"].preemptible and not tiers["standard"].preemptible
    assert tiers["batch"].window_s == catalog.tier("batch").completion_window_s
    # $ per token: the given standard price per 1M tokens x each tier's ratio.
    assert setup.prices["standard"].output == pytest.approx(3.0e-6)
    assert setup.prices["realtime"].input == pytest.approx(2 * 1.0e-6)
    assert setup.prices["flex"].cached_input == pytest.approx(0.5 * 0.5e-6)
    # Rented: the rent is the whole cost; power is counted for tokens per MW only.
    econ = setup.economics
    assert econ.gpus == 2
    assert econ.cost_per_s_fixed == pytest.approx(3.0 * 2 / 3600)
    assert econ.energy_cost_per_kwh == 0.0
    gpu = catalog.gpu("H100-SXM")
    assert econ.provisioned_kw == pytest.approx(gpu.kw_per_gpu * 2)  # all-in, facility included


def test_owned_hardware_pays_capital_over_its_years_and_buys_energy(catalog: Catalog) -> None:
    text = SCENARIO.replace(
        "rent_per_gpu_hour = 3.0",
        "capex_per_gpu = 30000\nyears = 4\nelectricity_per_kwh = 0.1\nops_per_gpu_hour = 0.2",
    )
    setup, _ = build(load(catalog, text), catalog)
    per_gpu_hour = 30000 / (4 * float(HOURS_PER_YEAR)) + 0.2
    assert setup.economics.cost_per_s_fixed == pytest.approx(per_gpu_hour * 2 / 3600)
    assert setup.economics.energy_cost_per_kwh == pytest.approx(0.1)
    assert setup.economics.idle_kw < setup.economics.busy_kw


def test_policy_and_seed_given_to_build_win_over_the_file(catalog: Catalog) -> None:
    loaded = load(catalog)
    setup, _ = build(loaded, catalog, policy="value", seed=3)
    assert setup.policy == "value"
    same, _ = build(loaded, catalog)  # the file's seed is 3 too
    other, _ = build(loaded, catalog, seed=4)

    def arrivals(s: Setup) -> list[tuple[float, str]]:
        return [(r.arrival_s, r.tier) for r in s.workload.initial()]

    assert arrivals(setup) == arrivals(same)
    assert arrivals(setup) != arrivals(other)


def test_a_built_scenario_simulates_every_request(catalog: Catalog) -> None:
    setup, _ = build(load(catalog), catalog, policy="value")
    s = simulate(setup).summary
    assert s["requests"] == 60
    assert s["requests_completed"] + sum(t["refused"] for t in s["per_tier"].values()) == 60
    assert s["per_tier"]["realtime"]["requests_completed"] == s["per_tier"]["realtime"]["requests"]
    assert s["cost_usd"] == pytest.approx(3.0 * 2 / 3600 * s["duration_s"], rel=1e-9)
    assert math.isfinite(s["profit_usd"])


def test_a_model_that_does_not_fit_is_an_error_at_its_key(catalog: Catalog) -> None:
    loaded = load(catalog, SCENARIO.replace('"llama-3.1-8b"', '"llama-3.1-405b"'))
    with pytest.raises(ConfigError, match=r"scenario\.toml:\d+.*tensor_parallel"):
        build(loaded, catalog)
