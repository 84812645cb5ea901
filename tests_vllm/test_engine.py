"""Our OpenAI-compatible adapter against a real vLLM server, set up as for a vllm replica."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio
import httpx
import pytest
from engine_streams import chat, collect, completion, text_of
from vllm_process import VllmServer

from tokenfactory.engines.base import Delta
from tokenfactory.engines.openai_http import OpenAIEngine

pytestmark = pytest.mark.anyio

# Output tokens that keep a request busy for half a minute while a test looks at the
# server; the tests close it long before it ends (the prompt and this stay within
# --max-model-len 16384).
LONG = 16000
SIGNAL_DEADLINE_S = 60.0  # for vLLM's metrics to show what a test did


def chat_prompt_tokens(content: str) -> int:
    """Tokens of a one-message chat: <s> <|user|> content <|end|> <|assistant|>."""
    return 4 + len(content)  # the tiny tokenizer has one token per ASCII character


async def metric(vllm: VllmServer, name: str, **labels: str) -> float:
    """One sample from vLLM's /metrics."""
    want = [f'{k}="{v}"' for k, v in labels.items()]
    async with httpx.AsyncClient(trust_env=False) as client:
        text = (await client.get(vllm.url + "/metrics")).text
    for line in text.splitlines():
        if line.startswith(name + "{") and all(w in line for w in want):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} {labels} is not in vLLM's /metrics")


async def until(check: Callable[[], Awaitable[bool]], what: str) -> None:
    """Poll an async predicate until it holds, or fail after the deadline."""
    with anyio.move_on_after(SIGNAL_DEADLINE_S):
        while not await check():
            await anyio.sleep(0.05)  # poll interval
        return
    raise AssertionError(f"vLLM never showed {what} within {SIGNAL_DEADLINE_S:.0f}s")


async def test_completion_streams_text_and_usage(engine: OpenAIEngine) -> None:
    deltas, usages = await collect(engine, completion("Hello", 8, ignore_eos=True))
    assert deltas[-1].finish_reason == "length"
    assert len(text_of(deltas)) == 8  # one character per token
    assert usages == [usages[0]] and usages[0].completion_tokens == 8
    assert usages[0].prompt_tokens == 1 + len("Hello")  # <s> and the characters


async def test_chat_streams_text_and_usage(engine: OpenAIEngine) -> None:
    deltas, usages = await collect(engine, chat("Hi there", 6))
    assert deltas[-1].finish_reason == "length"
    assert len(text_of(deltas)) == 6
    assert len(usages) == 1
    assert usages[0].completion_tokens == 6
    assert usages[0].prompt_tokens == chat_prompt_tokens("Hi there")


async def test_count_tokens_uses_vllm_tokenize_without_special_tokens(
    engine: OpenAIEngine,
) -> None:
    text = "count these, please"
    assert await engine.count_tokens(text) == len(text)
    _, usages = await collect(engine, completion(text, 1))
    assert usages[0].prompt_tokens == len(text) + 1  # the prompt gets <s>; the count not


async def test_load_reads_vllm_metrics_idle_and_busy(
    engine: OpenAIEngine, vllm: VllmServer
) -> None:
    # The gauges the adapter reads, under the names this vLLM gives them.
    for name in ("vllm:num_requests_running", "vllm:num_requests_waiting"):
        assert await metric(vllm, name) == 0.0
    assert await metric(vllm, "vllm:kv_cache_usage_perc") >= 0.0
    idle = await engine.load()
    assert idle is not None and idle.running == 0 and idle.waiting == 0
    assert 0.0 <= idle.kv_usage < 1.0
    stream = engine.stream(completion("Busy", LONG, ignore_eos=True))
    try:
        assert isinstance(await anext(stream), Delta)

        async def busy() -> bool:
            load = await engine.load()
            return load is not None and load.running == 1 and 0.0 < load.kv_usage <= 1.0

        await until(busy, "one running request holding KV cache")
    finally:
        await stream.aclose()
    await until(lambda: _idle(engine), "no running request after the stream closed")


async def _idle(engine: OpenAIEngine) -> bool:
    load = await engine.load()
    return load is not None and load.running == 0 and load.waiting == 0


async def test_closing_a_stream_aborts_it_and_the_server_serves_on(
    engine: OpenAIEngine, vllm: VllmServer
) -> None:
    # vLLM counts no aborted request as finished: what shows an abort is a request that
    # left the server with far fewer tokens generated than it asked for.
    generated = await metric(vllm, "vllm:generation_tokens_total")
    finished = await metric(vllm, "vllm:request_success_total", finished_reason="length")
    stream = engine.stream(chat("Go on", LONG, ignore_eos=True))
    received = [await anext(stream) for _ in range(3)]
    assert all(isinstance(d, Delta) and d.finish_reason is None for d in received)
    await stream.aclose()  # drops the connection: vLLM must abort, not finish, the request
    await until(lambda: _idle(engine), "no running request after the stream closed")
    assert await metric(vllm, "vllm:generation_tokens_total") - generated < LONG / 2
    assert await metric(vllm, "vllm:request_success_total", finished_reason="length") == finished
    deltas, usages = await collect(engine, chat("Next", 4))
    assert deltas[-1].finish_reason == "length" and usages[0].completion_tokens == 4


async def test_continuation_continues_the_reply(engine: OpenAIEngine) -> None:
    whole, _ = await collect(engine, chat("Tell me", 12))
    reply = text_of(whole)
    assert len(reply) == 12
    # transformers cuts the rendered chat after the final message's stripped text, so
    # the continued part must not end in whitespace.
    cut = max(k for k in range(3, 8) if not reply[k - 1].isspace())
    rest, usages = await collect(engine, chat("Tell me", 12 - cut, continuation=reply[:cut]))
    assert text_of(rest) == reply[cut:]  # greedy: the same tokens, picked up where it was
    assert usages[0].completion_tokens == 12 - cut
    # The same chat, with the reply so far after <|assistant|> and no <|end|> closing it.
    assert usages[0].prompt_tokens == chat_prompt_tokens("Tell me") + cut


async def test_priority_orders_the_waiting_requests(engine: OpenAIEngine) -> None:
    # The server runs one sequence at a time (--max-num-seqs 1): while a long request
    # holds it, two more wait, the lower priority value first in line though sent last.
    # The holder outranks both, so that neither could preempt it.
    holder = engine.stream(completion("Hold", LONG, ignore_eos=True, priority=-10))
    finished: list[str] = []

    async def run(name: str, priority: int) -> None:
        deltas, _ = await collect(engine, completion(name, 3, priority=priority))
        assert deltas[-1].finish_reason == "length"
        finished.append(name)

    async def waiting(count: int) -> bool:
        load = await engine.load()
        return load is not None and load.running == 1 and load.waiting == count

    try:
        assert isinstance(await anext(holder), Delta)
        async with anyio.create_task_group() as tg:
            tg.start_soon(run, "late", 5)
            await until(lambda: waiting(1), "one waiting request")
            tg.start_soon(run, "urgent", -5)
            await until(lambda: waiting(2), "two waiting requests")
            await holder.aclose()  # frees the one slot: the scheduler picks by priority
    finally:
        await holder.aclose()  # a failed test must not leave the server busy
    assert finished == ["urgent", "late"]
