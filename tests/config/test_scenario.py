from decimal import Decimal
from pathlib import Path

import pytest

from tokenfactory.catalog import Catalog
from tokenfactory.config import LoadedScenario, Scenario, load_scenario, load_scenario_text

DATA = Path(__file__).parent / "data"

# The issue's example, keys as written; `;`-joined lines are split into TOML lines and the
# mix is completed so that its shares sum to 1.
ISSUE = """\
[hardware]
gpu = "H200-SXM"      # catalog id
gpus = 8              # total; replicas = gpus / tensor_parallel
[model]
name = "llama-3.3-70b"
precision = "fp8"     # bf16 | fp8 | fp4
[engine]
kind = "trtllm"       # vllm | sglang | trtllm | llamacpp
tensor_parallel = 1
max_num_seqs = 256          # default 256
max_batched_tokens = 8192   # default 8192 (token budget per step)
chunked_prefill = true      # default true
block_size = 16             # default 16 (KV block, tokens)
gpu_memory_utilization = 0.9  # default 0.9
kv_precision = "fp8"        # optional
[workload]
arrival = "offline"   # offline | poisson | concurrency
requests = 3000
qps = 75.0            # poisson (required for poisson)
concurrency = 25      # concurrency (required for concurrency)
input_tokens = 1000
output_tokens = 1000
seed = 1
trace = "trace.csv"
[[workload.mix]]
tier = "realtime"
share = 0.2
[[workload.mix]]
tier = "standard"
share = 0.8
[workload.sessions]
count = 100
rate = 2.0
turns = 5
think_s = 10
system_tokens = 200
user_tokens = 100
output_tokens = 300
tier = "standard"
[workload.agents]
count = 50
steps = 20
system_tokens = 2000
task_tokens = 500
tool_output_tokens = 400
call_output_tokens = 60
reasoning_output_tokens = 800
reasoning_share = 0.3
tier = "standard"
[scheduler]
policy = "value"
router = "least_load"
[economics]
ownership = "rented"
rent_per_gpu_hour = 2.0
capex_per_gpu = 30000
years = 4
pue = 1.3
electricity_per_kwh = 0.08
kw_per_gpu = 1.73
ops_per_gpu_hour = 0
[tiers.realtime]
ttft_ms = 300
tpot_ms = 30
patience_s = 5
price_ratio = 2.5
[prices]
input = 0.5
cached_input = 0.25
output = 1.5
"""

# Line numbers below are those of this text.
BASE = """\
[hardware]
gpu = "H200-SXM"
gpus = 8
[model]
name = "llama-3.3-70b"
precision = "fp8"
[engine]
kind = "vllm"
tensor_parallel = 1
[workload]
arrival = "poisson"
requests = 100
qps = 5.0
input_tokens = 1000
output_tokens = 100
"""

MIX = """\
[[workload.mix]]
tier = "realtime"
share = 0.2
[[workload.mix]]
tier = "standard"
share = 0.8
"""


def load(text: str, catalog: Catalog, base_dir: Path | None = None) -> Scenario:
    return load_scenario_text(text, "scenario.toml", catalog, base_dir=base_dir).scenario


def test_the_issue_example_loads(tmp_path: Path, catalog: Catalog) -> None:
    (tmp_path / "scenario.toml").write_text(ISSUE)
    (tmp_path / "trace.csv").write_text("arrival_s,input_tokens,output_tokens\n")
    loaded = load_scenario(tmp_path / "scenario.toml", catalog)
    s = loaded.scenario
    assert (s.hardware.gpu, s.hardware.gpus, s.replicas) == ("H200-SXM", 8, 8)
    assert (s.model.name, s.model.precision, s.engine.kind) == ("llama-3.3-70b", "fp8", "trtllm")
    assert s.workload.trace == (tmp_path / "trace.csv").resolve()
    assert s.workload.tier_shares() == {"realtime": 0.2, "standard": 0.8}
    assert s.workload.sessions is not None and s.workload.sessions.count == 100
    assert s.workload.agents is not None and s.workload.agents.rate is None
    assert (s.scheduler.policy, s.economics.owned) == ("value", False)
    assert loaded.path == tmp_path / "scenario.toml"
    assert loaded.where("engine", "tensor_parallel").endswith("scenario.toml:9")


def test_the_documented_example_loads_with_every_key(catalog: Catalog) -> None:
    loaded = load_scenario(DATA / "example.toml", catalog)
    s = loaded.scenario
    assert s.workload.trace == (DATA / "trace.csv").resolve()
    assert s.workload.output_tokens == {"dist": "lognormal", "mean": 300, "max": 1024}
    assert s.workload.sessions is not None
    assert s.workload.sessions.think_s == {"dist": "exponential", "mean": 10}
    assert s.workload.agents is not None and s.workload.agents.tier == "flex"
    assert [m.tier for m in s.workload.mix] == ["realtime", "standard", "batch"]
    assert s.prices.cached_input == Decimal("0.25")
    assert loaded.where("workload.mix[2]", "share") == f"{DATA / 'example.toml'}:43"
    assert loaded.where("tiers.realtime", "price_ratio").endswith("example.toml:85")


def test_defaults_fill_what_is_not_written(catalog: Catalog) -> None:
    text = '[hardware]\ngpu = "B200"\n[model]\nname = "llama-3.1-8b"\n[engine]\nkind = "vllm"\n'
    s = load(text + "[workload]\nrequests = 5\ninput_tokens = 10\noutput_tokens = 20\n", catalog)
    assert (s.hardware.gpus, s.model.precision, s.engine.tensor_parallel) == (1, "bf16", 1)
    e = s.engine
    # batching knobs left out stay None: the engine kind's catalog defaults apply later
    assert (e.max_num_seqs, e.max_batched_tokens, e.chunked_prefill) == (None, None, None)
    assert (e.block_size, e.gpu_memory_utilization, e.kv_precision) == (None, None, None)
    assert s.kv_precision == "bf16"
    assert (s.workload.arrival, s.workload.seed, s.workload.trace) == ("offline", 0, None)
    assert s.workload.tier_shares() == {"standard": 1.0}
    assert (s.scheduler.policy, s.scheduler.router) == ("fcfs", "least_load")
    assert s.economics.model_dump() == dict.fromkeys(s.economics.model_dump())
    assert s.tier_presets(catalog) == catalog.tiers
    model = catalog.model("llama-3.1-8b")
    assert tuple(s.list_prices(catalog)) == (
        model.price_in,
        model.price_cached_in,
        model.price_out,
    )


def test_sessions_and_agents_defaults(catalog: Catalog) -> None:
    text = BASE + "[workload.sessions]\ncount = 3\n[workload.agents]\ncount = 2\n"
    w = load(text, catalog).workload
    assert w.sessions is not None and w.agents is not None
    assert (w.sessions.turns, w.sessions.think_s, w.sessions.tier) == (5, 10.0, "standard")
    assert (w.agents.steps, w.agents.reasoning_share, w.agents.rate) == (20, 0.3, None)


@pytest.mark.parametrize(
    ("weights", "kv", "expected"),
    [("fp4", None, "fp8"), ("fp8", None, "fp8"), ("bf16", None, "bf16"), ("fp4", "fp4", "fp4")],
)
def test_kv_precision_follows_the_weights_but_not_below_fp8(
    catalog: Catalog, weights: str, kv: str | None, expected: str
) -> None:
    text = BASE.replace('precision = "fp8"', f'precision = "{weights}"')
    if kv is not None:
        text = text.replace("tensor_parallel = 1", f'tensor_parallel = 1\nkv_precision = "{kv}"')
    assert load(text, catalog).kv_precision == expected


def test_distribution_tables_are_kept_as_written(catalog: Catalog) -> None:
    dist = '{dist = "lognormal", mean = 300, max = 1024}'
    s = load(BASE.replace("input_tokens = 1000", f"input_tokens = {dist}"), catalog)
    assert s.workload.input_tokens == {"dist": "lognormal", "mean": 300, "max": 1024}
    assert s.workload.output_tokens == 100


def test_money_is_exact_decimal_from_float_int_or_string(catalog: Catalog) -> None:
    text = BASE + (
        "[economics]\nrent_per_gpu_hour = 2.1\nelectricity_per_kwh = '0.1'\n"
        "[tiers.flex]\nprice_ratio = 0.3\n[prices]\ninput = 3\noutput = '1.10'\n"
    )
    s = load(text, catalog)
    assert s.economics.rent_per_gpu_hour == Decimal("2.1")
    assert str(s.economics.electricity_per_kwh) == "0.1"
    assert s.tiers["flex"].price_ratio == Decimal("0.3")
    assert s.tier_presets(catalog)["flex"].price_ratio == Decimal("0.3")
    assert s.tier_presets(catalog)["realtime"] == catalog.tier("realtime")
    prices = s.list_prices(catalog)
    assert (prices.input, str(prices.output)) == (Decimal(3), "1.10")
    assert prices.cached_input == catalog.model("llama-3.3-70b").price_cached_in


def test_owned_when_owned_inputs_are_given(catalog: Catalog) -> None:
    s = load(BASE + "[economics]\ncapex_per_gpu = 30000\n", catalog)
    assert s.economics.owned
    assert s.economics.capex_per_gpu == Decimal(30000)


def test_trace_path_is_relative_to_the_scenario_file(tmp_path: Path, catalog: Catalog) -> None:
    (tmp_path / "traces").mkdir()
    (tmp_path / "traces" / "day.csv").write_text("arrival_s\n")
    (tmp_path / "s.toml").write_text(BASE + 'trace = "traces/day.csv"\n')
    s = load_scenario(str(tmp_path / "s.toml"), catalog).scenario
    assert s.workload.trace == tmp_path / "traces" / "day.csv"
    assert s.workload.trace.is_absolute()


def test_trace_alone_is_a_workload(tmp_path: Path, catalog: Catalog) -> None:
    (tmp_path / "t.csv").write_text("arrival_s\n")
    text = BASE.replace("requests = 100", "requests = 0") + 'trace = "t.csv"\n'
    assert load(text, catalog, base_dir=tmp_path).workload.trace == tmp_path / "t.csv"


def test_loaded_scenario_names_keys_for_later_errors(catalog: Catalog) -> None:
    loaded = load_scenario_text(BASE, "scenario.toml", catalog)
    assert isinstance(loaded, LoadedScenario)
    assert loaded.where("engine", "tensor_parallel") == "scenario.toml:9"
    assert loaded.where("engine", "max_num_seqs") == "scenario.toml:7"
    error = loaded.error("engine", "tensor_parallel", "the model does not fit in memory")
    assert str(error) == (
        "scenario.toml:9: [engine] tensor_parallel: the model does not fit in memory"
    )
