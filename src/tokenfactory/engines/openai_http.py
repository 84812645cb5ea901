"""Any OpenAI-compatible server over HTTP: vLLM, SGLang, llama.cpp's server, TGI, Ollama."""

from __future__ import annotations

import json
import math
from collections.abc import AsyncGenerator, Callable, Sequence
from typing import TYPE_CHECKING, Any

import anyio
import httpx

from tokenfactory.engines.base import Delta, Engine, EngineError, EngineRequest, Load, Usage
from tokenfactory.engines.http1 import HttpError, HttpTimeout, Pool, Response

_RUNNING = "vllm:num_requests_running"
_WAITING = "vllm:num_requests_waiting"
_KV_GAUGES = ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc")  # newer name first
_PROBE_TIMEOUT = 5.0  # health, metrics and tokenize answer at once or not at all
_ABSENT = (404, 405)  # the server has no such endpoint


def parse_vllm_metrics(text: str) -> Load | None:
    """Load from vLLM's Prometheus text: requests summed over label sets, KV usage averaged."""
    values: dict[str, list[float]] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        brace, space = line.find("{"), line.find(" ")
        if brace != -1 and (space == -1 or brace < space):
            name, rest = line[:brace], line[line.rfind("}") + 1 :]
        else:
            name, _, rest = line.partition(" ")
        fields = rest.split()
        try:
            value = float(fields[0]) if fields else math.nan
        except ValueError:
            continue
        if not math.isnan(value):
            values.setdefault(name, []).append(value)
    if _RUNNING not in values or _WAITING not in values:
        return None
    # One label set per engine core (data parallel): their request counts add up, while
    # each KV usage is a share of that core's own cache, so the fleet's share is the mean.
    kv = next((values[g] for g in _KV_GAUGES if g in values), [0.0])
    return Load(
        running=round(sum(values[_RUNNING])),
        waiting=round(sum(values[_WAITING])),
        kv_usage=sum(kv) / len(kv),
    )


# Compact, UTF-8 as it is; a NaN goes as such and the engine answers it. Made once: a
# json.dumps with options builds a new encoder per call.
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
_DECODER = json.JSONDecoder()


def _json_bytes(body: dict[str, Any]) -> bytes:
    """A request body as JSON."""
    return _ENCODER.encode(body).encode()


def _json_value(payload: bytes) -> Any:
    """A stream chunk's JSON, checked as json.loads does, at half its cost for a chunk."""
    text = payload.decode()
    value, end = _DECODER.raw_decode(text)
    if end != len(text):
        raise ValueError(f"extra data after the JSON value, at {end}")
    return value


def _error_text(reason: str, content: bytes) -> str:
    """The message an OpenAI-style (or FastAPI-style) error body carries."""
    try:
        body = json.loads(content)
    except ValueError:
        return content.decode(errors="replace")[:500] or reason
    if isinstance(body, dict):
        error = body.get("error", body.get("detail"))
        if isinstance(error, dict) and "message" in error:
            return str(error["message"])
        if error is not None:
            return str(error)[:500]
    return str(body)[:500]


def _sse_data(buffer: bytes, final: bool) -> tuple[list[bytes], bytes]:
    """The `data:` payloads of the whole lines in `buffer`, and what follows the last one.

    Blank separators, `: ping` comments and `event:` lines carry nothing the gateway uses.
    """
    lines = buffer.split(b"\n")
    rest = b"" if final else lines.pop()
    return [line[5:].strip() for line in lines if line.startswith(b"data:")], rest


def _usage(data: dict[str, Any]) -> Usage:
    details = data.get("prompt_tokens_details") or {}
    return Usage(
        prompt_tokens=int(data.get("prompt_tokens") or 0),
        completion_tokens=int(data.get("completion_tokens") or 0),
        cached_tokens=int(details.get("cached_tokens") or 0),
    )


class OpenAIEngine:
    """An engine reached over OpenAI's HTTP API, with vLLM's extras where it has them."""

    def __init__(
        self,
        name: str,
        base_url: str,
        model: str,
        api_key: str | None = None,
        timeout: float = 120.0,
        connect_timeout: float = 10.0,
        metrics_url: str | None = None,
        send_priority: bool = False,
        continue_final_message: bool = False,
        health_paths: Sequence[str] = ("/health", "/v1/models"),
        ready_timeout: float = 30.0,
    ) -> None:
        self.name = name
        # Accept OpenAI-client style URLs ending in /v1: /health and /metrics sit above it.
        self.base_url = base_url.rstrip("/").removesuffix("/v1")
        self.model = model
        self.send_priority = send_priority  # vLLM: an integer, lower runs first
        self.continue_final_message = continue_final_message  # vLLM-like chat continuation
        self.supports_continuation = continue_final_message
        self.metrics_url = metrics_url or self.base_url + "/metrics"
        self.health_paths = tuple(health_paths)
        self.ready_timeout = ready_timeout
        self._timeout = httpx.Timeout(timeout, connect=min(timeout, connect_timeout))
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client: httpx.AsyncClient | None = None
        self._pool: Pool | None = None
        self._tokenize_path: str | None = None  # learnt on the first count_tokens
        self._bos_tokens: int | None = None  # what /extras/tokenize adds to any text

    @property
    def pool(self) -> Pool:
        """The keep-alive connections generations stream over, opened on first use."""
        if self._pool is None:
            connect = self._timeout.connect
            assert connect is not None and self._timeout.read is not None
            self._pool = Pool(self.base_url, self._headers, connect, self._timeout.read)
        return self._pool

    @property
    def client(self) -> httpx.AsyncClient:
        """The HTTP client for health, metrics and tokenize, opened on first use."""
        if self._client is None:
            self._client = httpx.AsyncClient(
                base_url=self.base_url,
                headers=self._headers,
                timeout=self._timeout,
                # A gateway holds many streams per replica; a pool cap would queue them here.
                limits=httpx.Limits(max_connections=None, max_keepalive_connections=64),
                trust_env=False,  # engines sit on the private network, never behind a proxy
            )
        return self._client

    async def start(self) -> None:
        """Open the client and wait (up to ready_timeout) until the engine answers."""
        with anyio.move_on_after(self.ready_timeout):
            while not await self.healthy():
                await anyio.sleep(0.2)  # poll interval while the server comes up
            return
        raise EngineError(f"{self.name}: no answer from {self.base_url} in {self.ready_timeout}s")

    async def stop(self) -> None:
        """Close the clients' connections."""
        if self._pool is not None:
            self._pool.close()
            self._pool = None
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def request_body(self, request: EngineRequest) -> tuple[str, dict[str, Any]]:
        """The path and JSON body of the streaming request for `request`."""
        body: dict[str, Any] = dict(request.params)
        body["model"] = self.model
        if request.max_tokens is not None:
            body["max_tokens"] = request.max_tokens
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
        if self.send_priority:
            body["priority"] = request.priority
        if request.kind == "completion":
            body["prompt"] = (request.prompt or "") + request.continuation
            return "/v1/completions", body
        messages = list(request.messages or [])
        if request.continuation:
            if not self.continue_final_message:
                raise EngineError(f"{self.name}: cannot continue a chat reply", status=400)
            messages.append({"role": "assistant", "content": request.continuation})
            body["continue_final_message"] = True
            body["add_generation_prompt"] = False
        body["messages"] = messages
        return "/v1/chat/completions", body

    def stream(self, request: EngineRequest) -> AsyncGenerator[Delta | Usage, None]:
        """Generated text as it comes, then Usage if the engine reports it."""
        return self._exchange(lambda: self.request_body(request))

    def stream_body(self, path: str, body: dict[str, Any]) -> AsyncGenerator[Delta | Usage, None]:
        """Stream a prepared request body: one Delta per read of text, then Usage if sent."""
        return self._exchange(lambda: (path, body))

    async def _exchange(
        self, prepare: Callable[[], tuple[str, dict[str, Any]]]
    ) -> AsyncGenerator[Delta | Usage, None]:
        """One generation: `prepare` gives its path and body, and fails as the stream does.

        One generator, not one per caller wrapping another: each item passes every layer.
        """
        path, body = prepare()
        started = finished = False
        usage: Usage | None = None
        response: Response | None = None
        try:
            response = await self.pool.request("POST", path, _json_bytes(body), "application/json")
            if response.status >= 400:
                message = _error_text(response.reason, await response.read())
                raise EngineError(
                    f"{self.name}: HTTP {response.status}: {message}", status=response.status
                )
            done = False
            rest = b""
            while True:
                data = await response.receive()
                payloads, rest = _sse_data(rest + data, final=not data)
                # What this read brought goes on as one Delta (see its docstring).
                pieces: list[str] = []
                reason: str | None = None
                chunks = 0  # chunks of this read that carried text or a finish
                failure: Exception | None = None
                for payload in payloads:
                    # Read on to the end of the body after [DONE] (servers close it there):
                    # a response left unread drops the connection, and each request would
                    # pay for a new one.
                    if done:
                        continue
                    if payload == b"[DONE]":
                        done = True
                        continue
                    try:
                        piece, why, sent = self._chunk(payload, started or chunks > 0)
                    except (ValueError, TypeError, AttributeError, EngineError) as exc:
                        failure = exc  # raised once what came before it has gone on
                        break
                    usage = sent or usage  # some servers repeat it: keep the last
                    if piece is not None:
                        pieces.append(piece)
                    if piece is not None or why is not None:
                        chunks += 1
                        reason = why if why is not None else reason
                if chunks:
                    started, finished = True, reason is not None
                    yield Delta(tuple(pieces), reason)
                if failure is not None:
                    raise failure
                if not data:
                    break
        except HttpTimeout as exc:
            raise EngineError(f"{self.name}: timed out ({exc})", started=started) from exc
        except HttpError as exc:
            raise EngineError(f"{self.name}: {exc}", started=started) from exc
        except (ValueError, TypeError, AttributeError) as exc:  # not JSON, or not a chunk
            raise EngineError(f"{self.name}: bad stream chunk: {exc}", started=started) from exc
        finally:
            # Closed before its end (the caller closed this generator, or an error), the
            # response drops its connection: the server aborts the request.
            if response is not None:
                response.close()
        if not finished:
            # llama-cpp-python ends an interrupted request with a bare [DONE], for one.
            raise EngineError(f"{self.name}: stream ended without a finish", started=started)
        if usage is not None:
            yield usage

    def _chunk(self, payload: bytes, started: bool) -> tuple[str | None, str | None, Usage | None]:
        """What one stream chunk carries: choice 0's token text, its finish reason, and
        usage, each if any (the empty text of a chunk that only finishes is no token)."""
        chunk = _json_value(payload)
        if isinstance(chunk.get("error"), dict):
            error = chunk["error"]
            code = error.get("code")
            raise EngineError(
                f"{self.name}: {error.get('message', error)}",
                started=started,
                status=code if isinstance(code, int) else None,
            )
        usage = _usage(chunk["usage"]) if chunk.get("usage") else None
        for choice in chunk.get("choices") or ():
            if choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta")
            text = delta.get("content") if delta is not None else choice.get("text")
            reason = choice.get("finish_reason")
            if reason is not None and not text:
                return None, reason, usage
            return text, reason, usage  # text None: a role-only opening chunk
        return None, None, usage

    async def status_of(self, url: str, timeout: float = _PROBE_TIMEOUT) -> int | None:
        """GET `url`: its HTTP status, or None if the engine is unreachable."""
        try:
            response = await self.client.get(url, timeout=timeout)
        except httpx.HTTPError:
            return None
        return response.status_code

    async def healthy(self) -> bool:
        """Whether the first health path the server has answers without error."""
        for path in self.health_paths:
            status = await self.status_of(path)
            if status is None:
                return False
            if status not in _ABSENT:
                return status < 400
        return False

    async def load(self) -> Load | None:
        """vLLM's running, waiting and KV usage from /metrics; None where absent."""
        try:
            response = await self.client.get(self.metrics_url, timeout=_PROBE_TIMEOUT)
        except httpx.HTTPError:
            return None
        return parse_vllm_metrics(response.text) if response.status_code < 400 else None

    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any] | None:
        """POST JSON for a JSON answer; None if the server has no such endpoint."""
        try:
            response = await self.client.post(path, json=body, timeout=self._timeout)
        except httpx.HTTPError as exc:
            raise EngineError(f"{self.name}: {exc!r}") from exc
        if response.status_code in _ABSENT:
            return None
        if response.status_code >= 400:
            text = _error_text(response.reason_phrase, response.content)
            raise EngineError(
                f"{self.name}: HTTP {response.status_code}: {text}", status=response.status_code
            )
        data: dict[str, Any] = response.json()
        return data

    async def _tokenize(self, path: str, text: str) -> int | None:
        if path == "/tokenize":  # vLLM (and SGLang): special tokens can be left out
            body = {"model": self.model, "prompt": text, "add_special_tokens": False}
            data = await self._post(path, body)
            return None if data is None else len(data["tokens"])
        data = await self._post(path, {"input": text})  # llama-cpp-python
        if data is None:
            return None
        if self._bos_tokens is None:
            # llama-cpp-python always adds the model's BOS: what the empty text gets.
            empty = await self._post(path, {"input": ""})
            self._bos_tokens = len(empty["tokens"]) if empty else 0
        return len(data["tokens"]) - self._bos_tokens

    async def count_tokens(self, text: str) -> int:
        """Tokens `text` takes, without the special tokens a tokenizer adds around it."""
        paths = [self._tokenize_path] if self._tokenize_path else ["/tokenize", "/extras/tokenize"]
        for path in paths:
            count = await self._tokenize(path, text)
            if count is not None:
                self._tokenize_path = path
                return count
        raise EngineError(
            f"{self.name}: the server has no tokenize endpoint (/tokenize, /extras/tokenize)",
            status=404,
        )


if TYPE_CHECKING:  # mypy checks that this adapter is an Engine
    _engine: Engine = OpenAIEngine("", "", "")
