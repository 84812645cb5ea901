"""The generic OpenAI-compatible engine, against a real llama-cpp-python server."""

from __future__ import annotations

import socket
import time
from collections.abc import AsyncIterator

import pytest
from engine_streams import chat, collect, completion, text_of

from tokenfactory.engines.base import EngineError, Load
from tokenfactory.engines.llamacpp import EmbeddedLlamaCpp
from tokenfactory.engines.openai_http import OpenAIEngine, parse_vllm_metrics

pytestmark = pytest.mark.anyio


@pytest.fixture
async def remote(llama: EmbeddedLlamaCpp) -> AsyncIterator[OpenAIEngine]:
    # Addressed as an OpenAI client would be, with /v1 on the end.
    engine = OpenAIEngine("remote", llama.http.base_url + "/v1", "tiny", api_key=llama.api_key)
    await engine.start()
    yield engine
    await engine.stop()


def _unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def test_completion_streams_to_its_finish(remote: OpenAIEngine) -> None:
    deltas, usages = await collect(remote, completion("Hello", 6))
    assert deltas[-1].finish_reason == "length"
    assert await remote.count_tokens(text_of(deltas)) == 6  # through /extras/tokenize
    assert usages == []  # llama-cpp-python reports no usage in streams


async def test_chat_streams_to_its_finish(remote: OpenAIEngine) -> None:
    deltas, _ = await collect(remote, chat("Hi", 5))
    assert deltas[-1].finish_reason == "length"
    assert len(text_of(deltas)) == 5


async def test_health_falls_back_to_models_and_load_is_none(remote: OpenAIEngine) -> None:
    assert await remote.healthy()  # llama-cpp-python has no /health: /v1/models answers
    assert await remote.load() is None  # nor vLLM's /metrics


async def test_count_tokens_agrees_with_the_embedded_tokenizer(
    remote: OpenAIEngine, llama: EmbeddedLlamaCpp
) -> None:
    for text in ["", "plain words", "ünïcode\nand <s> specials"]:
        assert await remote.count_tokens(text) == await llama.count_tokens(text)


async def test_nothing_listening_fails_fast_before_start() -> None:
    engine = OpenAIEngine("gone", f"http://127.0.0.1:{_unused_port()}", "m", timeout=2.0)
    began = time.monotonic()
    with pytest.raises(EngineError) as caught:
        await collect(engine, completion("Hi", 3))
    assert not caught.value.started and caught.value.status is None
    assert time.monotonic() - began < 2.0
    assert not await engine.healthy()
    assert await engine.load() is None
    with pytest.raises(EngineError):
        await engine.count_tokens("x")
    await engine.stop()


async def test_wrong_key_is_an_engine_error_with_status_401(llama: EmbeddedLlamaCpp) -> None:
    engine = OpenAIEngine("remote", llama.http.base_url, "tiny", api_key="wrong")
    with pytest.raises(EngineError) as caught:
        await collect(engine, chat("Hi", 3))
    assert caught.value.status == 401 and not caught.value.started
    await engine.stop()


async def test_bad_params_are_an_engine_error_with_the_server_status(
    remote: OpenAIEngine,
) -> None:
    # llama-cpp-python answers schema errors with 500 (vLLM would say 400).
    with pytest.raises(EngineError, match="max_tokens") as caught:
        await collect(remote, completion("Hi", -1))
    assert caught.value.status == 500 and not caught.value.started


def test_priority_is_sent_only_when_asked() -> None:
    request = completion("Hi", 3)
    request = type(request)("r", "m", "completion", prompt="Hi", priority=-5)
    _, plain = OpenAIEngine("a", "http://x", "m").request_body(request)
    _, vllm = OpenAIEngine("b", "http://x", "m", send_priority=True).request_body(request)
    assert "priority" not in plain and vllm["priority"] == -5
    assert vllm["stream"] is True and vllm["stream_options"] == {"include_usage": True}


def test_continuation_is_appended_or_continued() -> None:
    generic = OpenAIEngine("a", "http://x", "m")
    vllm = OpenAIEngine("b", "http://x", "m", continue_final_message=True)
    assert not generic.supports_continuation and vllm.supports_continuation
    path, body = generic.request_body(
        completion("Once", 3, seed=1).__class__(
            "r", "m", "completion", prompt="Once", continuation=" upon", params={"seed": 1}
        )
    )
    assert path == "/v1/completions" and body["prompt"] == "Once upon" and body["seed"] == 1
    path, body = vllm.request_body(chat("Hi", 3, continuation="Hel"))
    assert path == "/v1/chat/completions"
    assert body["messages"][-1] == {"role": "assistant", "content": "Hel"}
    assert body["continue_final_message"] is True and body["add_generation_prompt"] is False
    with pytest.raises(EngineError, match="cannot continue"):
        generic.request_body(chat("Hi", 3, continuation="Hel"))


VLLM_METRICS = """\
# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="meta-llama/Llama-3.1-8B-Instruct"} 7.0
vllm:num_requests_running{engine="1",model_name="meta-llama/Llama-3.1-8B-Instruct"} 5.0
# HELP vllm:num_requests_waiting Number of requests waiting to be processed.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="meta-llama/Llama-3.1-8B-Instruct"} 3.0
vllm:num_requests_waiting{engine="1",model_name="meta-llama/Llama-3.1-8B-Instruct"} 1.0
# HELP vllm:num_requests_waiting_by_reason Requests waiting, by reason.
# TYPE vllm:num_requests_waiting_by_reason gauge
vllm:num_requests_waiting_by_reason{engine="0",model_name="m",reason="capacity"} 99.0
# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{engine="0",model_name="meta-llama/Llama-3.1-8B-Instruct"} 0.75
vllm:kv_cache_usage_perc{engine="1",model_name="meta-llama/Llama-3.1-8B-Instruct"} 0.25
# HELP vllm:prefix_cache_queries_total Prefix cache queries, in terms of tokens.
# TYPE vllm:prefix_cache_queries_total counter
vllm:prefix_cache_queries_total{engine="0",model_name="meta-llama/Llama-3.1-8B-Instruct"} 123456.0
# HELP vllm:time_to_first_token_seconds Histogram of time to first token in seconds.
# TYPE vllm:time_to_first_token_seconds histogram
vllm:time_to_first_token_seconds_bucket{engine="0",le="0.001",model_name="m"} 0.0
vllm:time_to_first_token_seconds_bucket{engine="0",le="+Inf",model_name="m"} 42.0
vllm:time_to_first_token_seconds_count{engine="0",model_name="m"} 42.0
# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.
# TYPE process_cpu_seconds_total counter
process_cpu_seconds_total 812.4
"""


def test_vllm_metrics_are_summed_over_label_sets() -> None:
    assert parse_vllm_metrics(VLLM_METRICS) == Load(running=12, waiting=4, kv_usage=0.5)


def test_older_vllm_kv_gauge_and_odd_labels_are_read() -> None:
    text = (
        'vllm:num_requests_running{model_name="/models/my model {v2}"} 2.0\n'
        'vllm:num_requests_waiting{model_name="/models/my model {v2}"} 0.0 1700000000000\n'
        'vllm:gpu_cache_usage_perc{model_name="/models/my model {v2}"} 0.125\n'
    )
    assert parse_vllm_metrics(text) == Load(running=2, waiting=0, kv_usage=0.125)


def test_metrics_without_vllm_gauges_give_no_load() -> None:
    assert parse_vllm_metrics("process_cpu_seconds_total 1.0\n") is None
    assert parse_vllm_metrics("") is None
