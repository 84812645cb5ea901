"""The embedded llama.cpp engine, against a real llama-cpp-python server on a tiny model."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
from dataclasses import replace
from pathlib import Path

import anyio
import pytest
from conftest import CONTEXT
from engine_streams import chat, collect, completion, text_of

from tokenfactory.engines.base import Delta, EngineError
from tokenfactory.engines.llamacpp import EmbeddedLlamaCpp

pytestmark = pytest.mark.anyio


async def server_tokens(engine: EmbeddedLlamaCpp, text: str) -> list[int]:
    """What the server's own /extras/tokenize makes of `text` (BOS included)."""
    response = await engine.http.client.post("/extras/tokenize", json={"input": text})
    response.raise_for_status()
    tokens: list[int] = response.json()["tokens"]
    return tokens


async def server_prompt_tokens(engine: EmbeddedLlamaCpp, body: dict[str, object]) -> int:
    """The prompt tokens the server itself reports for a one-token, non-streamed request."""
    path = "/v1/chat/completions" if "messages" in body else "/v1/completions"
    response = await engine.http.client.post(path, json={**body, "max_tokens": 1})
    response.raise_for_status()
    count: int = response.json()["usage"]["prompt_tokens"]
    return count


async def test_completion_stops_at_exactly_max_tokens(llama: EmbeddedLlamaCpp) -> None:
    deltas, usages = await collect(llama, completion("Once upon a time", 37))
    assert [d.finish_reason for d in deltas[:-1]] == [None] * (len(deltas) - 1)
    assert deltas[-1].finish_reason == "length"
    text = text_of(deltas)
    assert await llama.count_tokens(text) == 37
    assert await llama.http.count_tokens(text) == 37  # the server's tokenizer agrees
    assert usages[-1].completion_tokens == 37
    # One piece per streamed chunk, one chunk per token; the empty chunk that carries the
    # finish reason is no piece.
    assert sum(len(d.pieces) for d in deltas) == 37


async def test_chat_stream_answers(llama: EmbeddedLlamaCpp) -> None:
    deltas, usages = await collect(llama, chat("Say something.", 9))
    assert deltas[-1].finish_reason == "length"
    assert await llama.count_tokens(text_of(deltas)) == 9
    assert len(usages) == 1 and usages[0].completion_tokens == 9


@pytest.mark.parametrize("prompt", ["Hello there", "héllo\nwörld <s> </s> ✓", ""])
async def test_completion_prompt_tokens_match_the_server(
    llama: EmbeddedLlamaCpp, prompt: str
) -> None:
    _, usages = await collect(llama, completion(prompt, 2))
    assert usages[0].prompt_tokens == len(await server_tokens(llama, prompt))
    assert usages[0].prompt_tokens == await server_prompt_tokens(llama, {"prompt": prompt})


async def test_chat_prompt_tokens_match_the_server(llama: EmbeddedLlamaCpp) -> None:
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi ✓"},
        {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": "And now?"},
    ]
    _, usages = await collect(llama, replace(chat("", 2), messages=messages))
    # The server's chat template renders the prompt; its non-streamed usage is the truth.
    assert usages[0].prompt_tokens == await server_prompt_tokens(llama, {"messages": messages})


async def test_count_tokens_leaves_out_bos(llama: EmbeddedLlamaCpp) -> None:
    text = "two words"
    assert await llama.count_tokens(text) == len(await server_tokens(llama, text)) - 1
    assert await llama.count_tokens("") == 0


async def test_completion_continues_where_it_was_cut(llama: EmbeddedLlamaCpp) -> None:
    whole, _ = await collect(llama, completion("Abc", 20, temperature=0.0))
    cut = text_of(whole)[:8]
    resumed, _ = await collect(
        llama, replace(completion("Abc", 12, temperature=0.0), continuation=cut)
    )
    assert cut + text_of(resumed) == text_of(whole)


async def test_chat_continues_where_it_was_cut(llama: EmbeddedLlamaCpp) -> None:
    whole, usage = await collect(llama, chat("Go on.", 20, temperature=0.0))
    cut = text_of(whole)[:8]
    resumed, resumed_usage = await collect(
        llama, chat("Go on.", 12, continuation=cut, temperature=0.0)
    )
    assert cut + text_of(resumed) == text_of(whole)
    assert resumed_usage[0].prompt_tokens == usage[0].prompt_tokens + 8
    assert resumed_usage[0].completion_tokens == 12


async def test_early_close_aborts_and_the_next_request_is_served(
    llama: EmbeddedLlamaCpp,
) -> None:
    assert llama.log_path is not None
    stream = llama.stream(completion("Long story:", CONTEXT - 20))
    async with contextlib.aclosing(stream):
        for _ in range(3):
            assert isinstance(await anext(stream), Delta)
    with anyio.fail_after(10):
        deltas, _ = await collect(llama, completion("Next", 4))
    assert deltas[-1].finish_reason == "length"
    with anyio.fail_after(10):  # the server logs the abort when it sees the disconnect
        while "Disconnected from client" not in llama.log_path.read_text():
            await anyio.sleep(0.05)


async def test_prompt_beyond_the_context_is_refused_before_sending(
    llama: EmbeddedLlamaCpp,
) -> None:
    with pytest.raises(EngineError) as caught:
        await collect(llama, completion("x" * CONTEXT, 4))
    assert caught.value.status == 400 and not caught.value.started


async def test_load_is_none(llama: EmbeddedLlamaCpp) -> None:
    assert await llama.load() is None


async def test_stop_ends_the_process_group(tiny_model: Path) -> None:
    engine = EmbeddedLlamaCpp(tiny_model, n_ctx=CONTEXT)
    await engine.start()
    assert await engine.healthy()
    process = engine.process
    assert process is not None
    http = engine.http
    await engine.stop()
    assert process.poll() is not None
    with pytest.raises(ProcessLookupError):
        os.killpg(process.pid, 0)
    assert not await engine.healthy()
    assert not await http.healthy()


async def test_engine_dying_mid_stream_is_an_error_after_start(tiny_model: Path) -> None:
    engine = EmbeddedLlamaCpp(tiny_model, n_ctx=CONTEXT)
    await engine.start()
    try:
        assert engine.process is not None
        with pytest.raises(EngineError) as caught:
            async for item in engine.stream(completion("Go", CONTEXT - 20)):
                if isinstance(item, Delta):
                    os.killpg(engine.process.pid, signal.SIGKILL)
        assert caught.value.started
        assert not await engine.healthy()
    finally:
        await engine.stop()


async def test_a_broken_model_fails_start(tmp_path: Path) -> None:
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF" + bytes(64))
    with pytest.raises(EngineError, match="cannot load"):
        await EmbeddedLlamaCpp(bad).start()


async def test_a_server_that_exits_fails_start_with_its_log(tiny_model: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        engine = EmbeddedLlamaCpp(tiny_model, port=taken.getsockname()[1], ready_timeout=30)
        with anyio.fail_after(30), pytest.raises(EngineError, match="exited") as caught:
            await engine.start()
    assert "address already in use" in str(caught.value)
    assert engine.process is None


async def test_concurrent_requests_queue_rather_than_interrupt(llama: EmbeddedLlamaCpp) -> None:
    # llama-cpp-python would cut a running stream short when another request arrives.
    results: dict[int, tuple[list[Delta], object]] = {}

    async def run(i: int) -> None:
        results[i] = await collect(llama, completion(f"Request {i}", 50))

    async with anyio.create_task_group() as tasks:
        for i in range(3):
            tasks.start_soon(run, i)
        assert await llama.healthy()  # the health check does not wait for the lock
    for deltas, usages in results.values():
        assert deltas[-1].finish_reason == "length"
        assert usages[0].completion_tokens == 50  # type: ignore[index]


ORPHAN = """
import sys, anyio
from tokenfactory.engines.llamacpp import EmbeddedLlamaCpp

async def main():
    engine = EmbeddedLlamaCpp(sys.argv[1], n_ctx=64)
    await engine.start()
    print(engine.process.pid, flush=True)

anyio.run(main)  # exits without stop(): the factory crashed
"""


async def test_the_server_dies_with_the_factory(tiny_model: Path) -> None:
    factory = await anyio.run_process([sys.executable, "-c", ORPHAN, str(tiny_model)])
    server = int(factory.stdout.split()[-1])
    status = Path(f"/proc/{server}/status")
    try:
        with anyio.fail_after(10):  # gone, or a zombie where nothing reaps orphans
            while status.exists() and "\nState:\tZ" not in status.read_text():
                await anyio.sleep(0.05)
    except TimeoutError:
        os.kill(server, signal.SIGKILL)  # never leave a server behind
        raise
