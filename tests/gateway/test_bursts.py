"""Tokens an engine sends in one write travel the gateway together, yet reach the client
as one event per token and are billed token by token; a bad chunk in a burst fails the
stream after what came before it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from floor_helpers import ADMIN, MakeGateway
from servers import no_lifespan, serving

from tokenfactory.engines.base import Delta, EngineError, EngineRequest
from tokenfactory.engines.openai_http import OpenAIEngine
from tokenfactory.gateway.journal import CREDIT

TOKENS = 2 * CREDIT + 8  # more than a journal credit arrives in one read
WORDS = [f"w{i} " for i in range(TOKENS)]
BAD_CHUNK = b'data: {"choices": [{"index": 0, "te\n\n'

Send = Callable[[dict[str, Any]], Awaitable[None]]


def _event(choice: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps({"choices": [{"index": 0, **choice}]}).encode() + b"\n\n"


@dataclass
class BurstEngine:
    """An OpenAI-compatible chat server that streams WORDS, all in one write (`burst`) or
    one write per event. It reports no usage and has no tokenize endpoint: the gateway
    bills what it counted itself. `tail` replaces the closing chunk and [DONE]."""

    burst: bool = True
    tail: bytes | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Send) -> None:
        if scope["type"] == "lifespan":
            await no_lifespan(receive, send)
            return
        while (await receive()).get("more_body"):
            pass  # read the whole body
        if scope["method"] == "GET" or not scope["path"].endswith("chat/completions"):
            status = 200 if scope["method"] == "GET" else 404  # healthy; nothing else
            headers = [(b"content-type", b"application/json")]
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": b"{}"})
            return
        events = [_event({"delta": {"role": "assistant", "content": ""}})]
        events += [_event({"delta": {"content": w}, "finish_reason": None}) for w in WORDS]
        if self.tail is None:
            events += [_event({"delta": {}, "finish_reason": "stop"}), b"data: [DONE]\n\n"]
        else:
            events.append(self.tail)
        headers = [(b"content-type", b"text/event-stream")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        for body in [b"".join(events)] if self.burst else events:
            await send({"type": "http.response.body", "body": body, "more_body": True})
        await send({"type": "http.response.body", "body": b""})


REQUEST = EngineRequest(
    "r", "m", "chat", messages=[{"role": "user", "content": "hi"}], max_tokens=TOKENS
)


async def _items(url: str) -> tuple[list[Delta], EngineError | None]:
    engine = OpenAIEngine("burst", url, "m")
    deltas: list[Delta] = []
    try:
        async for item in engine.stream(REQUEST):
            if isinstance(item, Delta):
                deltas.append(item)
    except EngineError as e:
        return deltas, e
    finally:
        await engine.stop()
    return deltas, None


def test_an_engine_s_burst_is_one_item_of_its_pieces_in_order() -> None:
    with serving(BurstEngine()) as url:
        deltas, error = asyncio.run(_items(url))
    assert error is None
    # The opening chunk's empty text is a piece; the closing chunk is only the finish.
    assert [p for d in deltas for p in d.pieces] == ["", *WORDS]
    assert len(deltas) < TOKENS  # they came in one write: not one item per token
    assert deltas[-1].finish_reason == "stop"
    assert all(d.finish_reason is None for d in deltas[:-1])


def test_a_bad_chunk_in_a_burst_fails_the_stream_after_what_came_before_it() -> None:
    with serving(BurstEngine(tail=BAD_CHUNK)) as url:
        deltas, error = asyncio.run(_items(url))
    assert [p for d in deltas for p in d.pieces] == ["", *WORDS]
    assert error is not None and "bad stream chunk" in str(error) and error.started


def test_a_bad_chunk_before_any_text_fails_a_stream_not_started() -> None:
    @dataclass
    class Garbage(BurstEngine):
        async def __call__(self, scope: dict[str, Any], receive: Any, send: Send) -> None:
            if scope["type"] != "http" or scope["method"] == "GET":
                await super().__call__(scope, receive, send)
                return
            while (await receive()).get("more_body"):
                pass
            headers = [(b"content-type", b"text/event-stream")]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            body = BAD_CHUNK + _event({"delta": {"content": "late"}})
            await send({"type": "http.response.body", "body": body})

    with serving(Garbage()) as url:
        deltas, error = asyncio.run(_items(url))
    assert deltas == []  # the text after the bad chunk never goes on
    assert error is not None and not error.started


def _factory(url: str) -> str:
    return (
        f'[server]\nadmin_key = "{ADMIN}"\n[[replicas]]\nname = "r0"\nengine = "twin"\n'
        f'url = "{url}"\nmodel = "llama-3.1-8b"\ngpu = "H100-SXM"\nprecision = "fp8"\n'
    )


@pytest.mark.parametrize("burst", [True, False], ids=["one-write", "a-write-each"])
def test_a_burst_reaches_the_client_one_event_per_token_billed_per_token(
    make_gateway: MakeGateway, burst: bool
) -> None:
    with serving(BurstEngine(burst)) as url:
        gw = make_gateway(text=_factory(url))
        headers = {"Authorization": f"Bearer {gw.key()}"}
        body = {
            "model": "llama-3.1-8b",
            "messages": [{"role": "user", "content": "hello"}],
            "max_tokens": TOKENS,
            "stream": True,
        }
        contents: list[str] = []
        with httpx.stream(
            "POST", gw.v1 + "/chat/completions", json=body, headers=headers, timeout=30
        ) as r:
            assert r.status_code == 200
            lines = [line for line in r.iter_lines() if line]
        assert lines[-1] == "data: [DONE]"
        events = [json.loads(line.removeprefix("data: ")) for line in lines[:-1]]
        assert events[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
        for event in events[1:-1]:
            (choice,) = event["choices"]
            assert choice["finish_reason"] is None and set(choice["delta"]) == {"content"}
            contents.append(choice["delta"]["content"])
        assert contents == WORDS  # one event per token, each with its own text
        assert events[-1]["choices"][0]["finish_reason"] == "stop"
        billed = gw.ledger.event(events[0]["id"])
        assert billed is not None and billed.output_tokens == TOKENS

        body["stream"] = False
        whole = httpx.post(gw.v1 + "/chat/completions", json=body, headers=headers, timeout=30)
        assert whole.json()["choices"][0]["message"]["content"] == "".join(WORDS)
        assert whole.json()["usage"]["completion_tokens"] == TOKENS
