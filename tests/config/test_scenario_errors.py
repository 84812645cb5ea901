from pathlib import Path

import pytest

from tokenfactory.catalog import Catalog
from tokenfactory.config import load_scenario, load_scenario_text
from tokenfactory.errors import ConfigError

# Line numbers in the expectations below are those of this text.
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


def error_of(text: str, catalog: Catalog) -> str:
    with pytest.raises(ConfigError) as caught:
        load_scenario_text(text, "scenario.toml", catalog)
    return caught.value.message


def test_the_base_text_loads(catalog: Catalog) -> None:
    assert load_scenario_text(BASE, "scenario.toml", catalog).scenario.workload.qps == 5.0


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            "qps = 5.0",
            "qsp = 5.0",
            "scenario.toml:13: [workload] unknown key 'qsp'; did you mean 'qps'?",
        ),
        (
            "[hardware]",
            "[hardwar]",
            "scenario.toml:1: unknown table [hardwar]; did you mean [hardware]?",
        ),
        (
            "gpus = 8",
            "count = 8",
            "scenario.toml:3: [hardware] unknown key 'count'; did you mean 'gpus'?",
        ),
        ("gpus = 8", "foo = 8", "scenario.toml:3: [hardware] unknown key 'foo'; valid: gpu, gpus"),
        ("gpus = 8", "gpus = 0", "scenario.toml:3: [hardware] gpus: must be > 0, got 0"),
        ("gpus = 8", 'gpus = "8"', "scenario.toml:3: [hardware] gpus: must be an integer, got '8'"),
        (
            "gpus = 8",
            "gpus = true",
            "scenario.toml:3: [hardware] gpus: must be an integer, got true",
        ),
        (
            'precision = "fp8"',
            'precision = "fp16"',
            "scenario.toml:6: [model] precision: must be 'bf16', 'fp8' or 'fp4', got 'fp16'",
        ),
        (
            "tensor_parallel = 1",
            "tensor_parallel = 1\ngpu_memory_utilization = 1.5",
            "scenario.toml:10: [engine] gpu_memory_utilization: must be <= 1, got 1.5",
        ),
        (
            "tensor_parallel = 1",
            "tensor_parallel = 3",
            "scenario.toml:9: [engine] tensor_parallel = 3 does not divide [hardware] gpus = 8",
        ),
        ('kind = "vllm"\n', "", "scenario.toml:7: [engine] kind: required (missing)"),
        ("qps = 5.0\n", "", "scenario.toml:10: [workload] qps: required when arrival = 'poisson'"),
        (
            'arrival = "poisson"',
            'arrival = "concurrency"',
            "scenario.toml:10: [workload] concurrency: required when arrival = 'concurrency'",
        ),
        (
            "input_tokens = 1000\n",
            "",
            "scenario.toml:10: [workload] input_tokens: required when requests > 0",
        ),
        (
            "input_tokens = 1000",
            'input_tokens = "long"',
            "scenario.toml:14: [workload] input_tokens: must be an integer >= 1 or a table",
        ),
        (
            "input_tokens = 1000",
            "input_tokens = {mean = 300}",
            "scenario.toml:14: [workload] input_tokens: a distribution needs a 'dist' name",
        ),
        ("requests = 100", "requests = 0", "scenario.toml:12: [workload] requests: empty workload"),
        ("qps = 5.0", "qps = ", "scenario.toml:13: not valid TOML: Invalid value (column 7)"),
    ],
)
def test_errors_name_file_line_table_and_key(
    catalog: Catalog, old: str, new: str, expected: str
) -> None:
    assert old in BASE
    assert error_of(BASE.replace(old, new, 1), catalog).startswith(expected)


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            'gpu = "H200-SXM"',
            'gpu = "H20"',
            "scenario.toml:2: [hardware] gpu: unknown GPU 'H20'; did you mean ",
        ),
        (
            'name = "llama-3.3-70b"',
            'name = "llama-3.3-7b"',
            "scenario.toml:5: [model] name: unknown model 'llama-3.3-7b'; did you mean ",
        ),
    ],
)
def test_unknown_catalog_ids_carry_the_catalog_hint(
    catalog: Catalog, old: str, new: str, expected: str
) -> None:
    message = error_of(BASE.replace(old, new), catalog)
    assert message.startswith(expected)
    assert new.split('"')[1] in message
    assert ("H200-SXM" in message) or ("llama-3.3-70b" in message)


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (
            '[[workload.mix]]\ntier = "realtime"\nshare = 0.2\n'
            '[[workload.mix]]\ntier = "standard"\nshare = 0.7\n',
            "scenario.toml:16: [workload.mix] share: shares sum to 0.9, not 1",
        ),
        (
            '[[workload.mix]]\ntier = "realtme"\nshare = 1.0\n',
            "scenario.toml:17: [[workload.mix]] #1 tier: unknown tier 'realtme'; "
            "did you mean realtime?",
        ),
        (
            '[[workload.mix]]\ntier = "flex"\nshare = 0.5\n'
            '[[workload.mix]]\ntier = "flex"\nshare = 0.5\n',
            "scenario.toml:20: [[workload.mix]] #2 tier: 'flex' appears twice",
        ),
        (
            '[[workload.mix]]\ntier = "flex"\nshare = 1.0\n'
            '[[workload.mix]]\ntier = "batch"\nshare = 0\n',
            "scenario.toml:21: [[workload.mix]] #2 share: must be > 0, got 0",
        ),
        (
            "[workload.sessions]\ncount = 2\ntunrs = 3\n",
            "scenario.toml:18: [workload.sessions] unknown key 'tunrs'; did you mean 'turns'?",
        ),
        (
            "[workload.sesions]\ncount = 2\n",
            "scenario.toml:16: unknown table [workload.sesions]; did you mean [workload.sessions]?",
        ),
        (
            '[workload.agents]\ncount = 2\ntier = "premium"\n',
            "scenario.toml:18: [workload.agents] tier: unknown tier 'premium'",
        ),
        (
            "[tiers.rt]\nttft_ms = 100\n",
            "scenario.toml:16: [tiers.rt] unknown tier 'rt'; "
            "valid: batch, flex, realtime, standard",
        ),
        (
            "[tiers.realtime]\nttft = 100\n",
            "scenario.toml:17: [tiers.realtime] unknown key 'ttft'; did you mean 'ttft_ms'?",
        ),
        (
            "[economics]\nrent_per_gpu_hour = 'two'\n",
            "scenario.toml:17: [economics] rent_per_gpu_hour: must be a number, got 'two'",
        ),
        (
            "[economics]\nrent_per_gpu_hour = 2\nyears = 4\n",
            "scenario.toml:17: [economics] rent_per_gpu_hour: given with years; say ownership",
        ),
        (
            "[prices]\ninput = -1\n",
            "scenario.toml:17: [prices] input: must be >= 0, got -1",
        ),
        (
            "[scheduler]\npolicy = 'edf'\n",
            "scenario.toml:17: [scheduler] policy: must be 'fcfs', 'priority' or 'value'",
        ),
    ],
)
def test_errors_in_later_tables(catalog: Catalog, extra: str, expected: str) -> None:
    assert error_of(BASE + extra, catalog).startswith(expected)


def test_unknown_table_without_a_near_name_lists_the_tables(catalog: Catalog) -> None:
    message = error_of(BASE + "[zzz]\nq = 1\n", catalog)
    assert message.startswith("scenario.toml:16: unknown table [zzz]; valid: [hardware], [model]")
    assert "[prices]" in message


def test_missing_table_is_named(catalog: Catalog) -> None:
    text = BASE.replace('[engine]\nkind = "vllm"\ntensor_parallel = 1\n', "")
    assert error_of(text, catalog) == "scenario.toml:1: missing table [engine]"


def test_the_first_problem_in_the_file_is_reported(catalog: Catalog) -> None:
    text = BASE.replace("gpus = 8", "gpus = 0").replace("qps = 5.0", "qps = -1.0")
    assert error_of(text, catalog).startswith("scenario.toml:3: [hardware] gpus:")


def test_malformed_toml_at_the_end_names_the_last_line(catalog: Catalog) -> None:
    message = error_of(BASE + 'note = "open\n', catalog)
    assert message.startswith("scenario.toml:16: not valid TOML: ")


def test_missing_trace_names_the_trace_key(tmp_path: Path, catalog: Catalog) -> None:
    (tmp_path / "s.toml").write_text(BASE + 'trace = "nope.csv"\n')
    with pytest.raises(ConfigError) as caught:
        load_scenario(tmp_path / "s.toml", catalog)
    expected = f"{tmp_path / 's.toml'}:16: [workload] trace: no such file: {tmp_path / 'nope.csv'}"
    assert caught.value.message == expected
    assert caught.value.param == "workload.trace"


def test_unreadable_files_are_config_errors(tmp_path: Path, catalog: Catalog) -> None:
    with pytest.raises(ConfigError, match="cannot read scenario file"):
        load_scenario(tmp_path / "absent.toml", catalog)
    (tmp_path / "latin.toml").write_bytes(b"# caf\xe9\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_scenario(tmp_path / "latin.toml", catalog)
