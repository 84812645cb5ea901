"""The twin engine's HTTP face: OpenAI-compatible completions, vLLM-style /metrics.

Requests: `max_tokens` (chat also `max_completion_tokens`) counts new tokens, default
256 within the model's context, beyond it a 400 as vLLM answers; every request runs to
`max_tokens` (finish reason `length`). `priority` orders the queue as vLLM's priority
scheduling does (lower first). Extensions: `prompt_tokens` sets the prompt's size, and
`continue_final_message` continues a trailing assistant message, whose text counts as
prompt and whose words as tokens already generated. A client that disconnects
mid-stream is aborted in the replica. `system_fingerprint` marks the text as synthetic.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal

import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from tokenfactory.engines.twin import DEFAULT_MAX_TOKENS, Twin, TwinStream, count_tokens, token_text
from tokenfactory.errors import BadInput, TokenfactoryError, UnknownId
from tokenfactory.perf.model import Deployment, Efficiency
from tokenfactory.sim.replica import EngineLimits

SYNTHETIC = "tokenfactory-twin-synthetic-text"
Kind = Literal["chat", "completion"]
_MARK = "\x00"  # stands for a token's text in a pre-rendered chunk


@dataclass(frozen=True, slots=True)
class Ask:
    """What the twin takes from a request body."""

    kind: Kind
    prompt_tokens: int
    max_tokens: int
    priority: int
    start: int  # synthetic tokens already generated (a continued message)
    stream: bool
    include_usage: bool


def _int(body: dict[str, Any], key: str, default: int | None, low: int) -> int | None:
    value = body.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise BadInput(f"{key} must be an integer >= {low}", param=key)
    return value


def _text(content: object, param: str) -> str:
    """The text of a message's content: a string, parts with text, or nothing."""
    if content is None or isinstance(content, str):
        return content or ""
    if isinstance(content, list):
        parts = [p.get("text") for p in content if isinstance(p, dict)]
        return "".join(t for t in parts if isinstance(t, str))
    raise BadInput("content must be a string or a list of parts", param=param)


def _prompt(kind: Kind, body: dict[str, Any]) -> tuple[int, int]:
    """Prompt tokens, and tokens already generated in a continued assistant message."""
    if kind == "completion":
        prompt = body.get("prompt")
        if isinstance(prompt, list) and len(prompt) == 1 and not isinstance(prompt[0], int):
            prompt = prompt[0]  # a batch of one
        if isinstance(prompt, str):
            return count_tokens(prompt), 0
        if isinstance(prompt, list) and prompt and all(isinstance(t, int) for t in prompt):
            return len(prompt), 0  # token ids: their count is exact
        raise BadInput("prompt must be a string or a list of token ids", param="prompt")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadInput("messages must be a non-empty list", param="messages")
    if not all(isinstance(m, dict) and isinstance(m.get("role"), str) for m in messages):
        raise BadInput("each message needs a role", param="messages")
    texts = [_text(m.get("content"), "messages") for m in messages]
    start = 0
    if body.get("continue_final_message"):
        if messages[-1]["role"] != "assistant":
            raise BadInput("continue_final_message needs a final assistant message")
        start = len(texts[-1].split())  # one synthetic token per word
    return count_tokens("".join(texts)), start


def parse(kind: Kind, body: object, model: str, max_context: int) -> Ask:
    """Check a request body and size its work; BadInput (4xx) when it is wrong."""
    if not isinstance(body, dict):
        raise BadInput("the body must be a JSON object")
    if body.get("model") != model:
        raise UnknownId("model", str(body.get("model")), [model], param="model")
    if body.get("n", 1) != 1:
        raise BadInput("the twin generates one choice (n = 1)", param="n")
    counted, start = _prompt(kind, body)
    prompt = _int(body, "prompt_tokens", counted, 1) or counted
    key = "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
    wanted = _int(body, key, None, 1)
    room = max_context - prompt
    if (wanted or 1) > room:
        raise BadInput(
            f"This model's maximum context length is {max_context} tokens. However, you "
            f"requested {prompt + (wanted or 1)} tokens ({prompt} in the prompt, "
            f"{wanted or 1} in the completion). Reduce the prompt or the completion.",
            param=key,
        )
    options = body.get("stream_options") or {}
    return Ask(
        kind,
        prompt,
        wanted or min(DEFAULT_MAX_TOKENS, room),
        _int(body, "priority", 0, -(2**63)) or 0,
        start,
        bool(body.get("stream")),
        isinstance(options, dict) and bool(options.get("include_usage")),
    )


class _Render:
    """The JSON a generation answers with, chunks pre-rendered around a token's text."""

    def __init__(self, ask: Ask, model: str, stream: TwinStream) -> None:
        self.ask, self.stream = ask, stream
        chat = ask.kind == "chat"
        self.base = {
            "id": f"{'chatcmpl' if chat else 'cmpl'}-twin-{stream.id}",
            "object": "chat.completion.chunk" if chat else "text_completion",
            "created": int(time.time()),
            "model": model,
            "system_fingerprint": SYNTHETIC,
        }
        self.token = self._split(None)
        self.last = self._split("length")
        self.role = self._sse(self._choice({"role": "assistant", "content": ""}, None))

    def _choice(self, text: object, finish: str | None) -> dict[str, Any]:
        body: dict[str, Any] = {"delta": text} if self.ask.kind == "chat" else {"text": text}
        return {"index": 0, **body, "logprobs": None, "finish_reason": finish}

    def _sse(self, choice: dict[str, Any] | None, **extra: Any) -> bytes:
        data = {**self.base, "choices": [] if choice is None else [choice], **extra}
        return b"data: " + json.dumps(data, separators=(",", ":")).encode() + b"\n\n"

    def _split(self, finish: str | None) -> tuple[bytes, bytes]:
        text = {"content": _MARK} if self.ask.kind == "chat" else _MARK
        before, after = self._sse(self._choice(text, finish)).split(b"\\u0000")
        return before, after

    def chunks(self, seen: int, produced: int) -> bytes:
        """SSE events for tokens seen..produced (the role first, as OpenAI streams it)."""
        out = [self.role] if seen == 0 and self.ask.kind == "chat" else []
        start, end = self.ask.start, self.ask.max_tokens
        for i in range(seen, produced):
            before, after = self.last if i == end - 1 else self.token
            out.append(before + token_text(start + i).encode() + after)
        return b"".join(out)

    def usage(self) -> dict[str, int]:
        """Tokens in and out, as OpenAI reports them."""
        p, c = self.ask.prompt_tokens, self.stream.produced
        return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}

    def tail(self) -> bytes:
        """The usage chunk when asked for, then the end of the stream."""
        usage = self._sse(None, usage=self.usage()) if self.ask.include_usage else b""
        return usage + b"data: [DONE]\n\n"

    def whole(self) -> dict[str, Any]:
        """The non-streamed response."""
        a, n = self.ask, self.stream.produced
        text = "".join(token_text(a.start + i) for i in range(n))
        body: dict[str, Any] = (
            {"message": {"role": "assistant", "content": text}}
            if a.kind == "chat"
            else {"text": text}
        )
        choice = {"index": 0, **body, "logprobs": None, "finish_reason": "length"}
        obj = "chat.completion" if a.kind == "chat" else "text_completion"
        return {**self.base, "object": obj, "choices": [choice], "usage": self.usage()}


class _Reply:
    """The answer to one generation; it aborts the generation if the client goes away."""

    def __init__(self, twin: Twin, stream: TwinStream, render: _Render) -> None:
        self.twin, self.stream, self.render = twin, stream, render

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        watcher = asyncio.create_task(self._watch(receive))
        try:
            if self.render.ask.stream:
                await self._events(send)
            else:
                await self.stream.done()
                if self.stream.status == "ok":
                    await JSONResponse(self.render.whole())(scope, receive, send)
        finally:
            watcher.cancel()
            self.twin.abort(self.stream)  # a no-op once it is over

    async def _events(self, send: Send) -> None:
        headers = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        stream, seen = self.stream, 0
        while stream.status != "aborted":
            produced = await stream.wait(seen)
            if produced > seen:
                body = self.render.chunks(seen, produced)
                seen = produced
                await send({"type": "http.response.body", "body": body, "more_body": True})
            elif stream.status == "ok":
                await send({"type": "http.response.body", "body": self.render.tail()})
                return

    async def _watch(self, receive: Receive) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        self.twin.abort(self.stream)


def create_twin_app(
    deployment: Deployment, efficiency: Efficiency, limits: EngineLimits, speedup: float = 1.0
) -> Starlette:
    """An OpenAI-compatible app that serves like `deployment` under the twin's clock."""
    twin = Twin(deployment, efficiency, limits, speedup)

    async def generate(request: Request, kind: Kind) -> Any:
        try:
            body = await request.json()
        except ValueError as e:
            raise BadInput(f"the body is not valid JSON: {e}") from e
        ask = parse(kind, body, twin.name, twin.max_context)
        stream = twin.submit(ask.prompt_tokens, ask.max_tokens, ask.priority, ask.start)
        return _Reply(twin, stream, _Render(ask, twin.name, stream))

    async def models(request: Request) -> Response:
        card = {"id": twin.name, "object": "model", "created": 0, "owned_by": "tokenfactory-twin"}
        return JSONResponse(
            {"object": "list", "data": [{**card, "max_model_len": twin.max_context}]}
        )

    async def health(request: Request) -> Response:
        return Response(status_code=503 if twin.env.failure else 200)

    async def metrics(request: Request) -> Response:
        return Response(generate_latest(twin.registry), media_type=CONTENT_TYPE_LATEST)

    async def error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, TokenfactoryError)
        detail = {"message": exc.message, "type": exc.type, "param": exc.param, "code": exc.code}
        return JSONResponse({"error": detail}, status_code=exc.status)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        twin.env.start()
        try:
            yield
        finally:
            await twin.env.stop()

    routes = [
        Route("/v1/chat/completions", partial(generate, kind="chat"), methods=["POST"]),
        Route("/v1/completions", partial(generate, kind="completion"), methods=["POST"]),
        Route("/v1/models", models),
        Route("/health", health),
        Route("/metrics", metrics),
    ]
    app = Starlette(routes=routes, exception_handlers={TokenfactoryError: error}, lifespan=lifespan)
    app.state.twin = twin
    return app


def serve_twin(
    deployment: Deployment,
    efficiency: Efficiency,
    limits: EngineLimits,
    speedup: float = 1.0,
    host: str = "127.0.0.1",
    port: int = 8100,
) -> None:
    """Serve the twin until interrupted."""
    app = create_twin_app(deployment, efficiency, limits, speedup)
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
