"""One streamed chat completion against any OpenAI-compatible endpoint, measured.

TTFT is the first chunk carrying content; each later content chunk adds a gap (ITL).
Tokens come from the endpoint's usage chunk (`stream_options.include_usage`); an
endpoint that sends none has its content chunks counted and the planned prompt size
used, and the sample says so (`tokens_from = "counted"`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from tokenfactory.bench.prompts import Message
from tokenfactory.bench.sample import HTTP_ERROR, OK, RATE_LIMITED, TRANSPORT, Sample
from tokenfactory.workload import Request

# The workload's tiers as OpenAI's `service_tier`; standard sends none (the key's default).
SERVICE_TIER = {"realtime": "priority", "standard": None, "flex": "flex"}
ANSWERED = {"priority": "realtime", "default": "standard", "flex": "flex", "batch": "batch"}
ERROR_TEXT = 300  # characters of an error body kept per sample


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where bench sends requests and how long it waits."""

    url: str  # the OpenAI base URL, ending in /v1
    model: str
    api_key: str | None = None
    timeout_s: float = 300.0  # longest wait for the next byte of an answer
    connect_timeout_s: float = 10.0
    # Fields added to every request, e.g. vLLM's {"ignore_eos": true}; bench's own win.
    extra_body: Mapping[str, Any] = field(default_factory=dict)

    def headers(self) -> dict[str, str]:
        """The authorisation header, when there is a key."""
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def client(self) -> httpx.AsyncClient:
        """An HTTP client with this endpoint's timeouts and no cap on connections."""
        timeout = httpx.Timeout(self.timeout_s, connect=self.connect_timeout_s, pool=None)
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=1000)
        return httpx.AsyncClient(timeout=timeout, limits=limits, headers=self.headers())


def body(endpoint: Endpoint, r: Request, messages: list[Message]) -> dict[str, Any]:
    """The chat completion request for `r`."""
    out: dict[str, Any] = {
        **endpoint.extra_body,
        "model": endpoint.model,
        "messages": messages,
        "max_tokens": r.output_tokens,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    tier = SERVICE_TIER[r.tier]
    if tier is not None:
        out["service_tier"] = tier
    return out


async def send(
    client: httpx.AsyncClient,
    endpoint: Endpoint,
    r: Request,
    messages: list[Message],
    clock: Callable[[], float],
) -> Sample:
    """Send `r` and measure it; every failure ends up in the sample, none is raised."""
    s = Sample(
        r.id, r.kind, r.tier, r.session, r.arrival_s, clock(), r.input_tokens, r.output_tokens
    )
    try:
        async with client.stream(
            "POST", endpoint.url + "/chat/completions", json=body(endpoint, r, messages)
        ) as response:
            s.http_status = response.status_code
            if response.status_code != 200:
                text = (await response.aread()).decode(errors="replace")
                s.status = RATE_LIMITED if response.status_code == 429 else HTTP_ERROR
                s.error = f"HTTP {response.status_code}: {error_message(text)}"
                s.end_s = clock()
                return s
            await _read_events(response, s, clock)
    except httpx.HTTPError as e:
        s.status, s.error, s.end_s = TRANSPORT, f"{type(e).__name__}: {e}"[:ERROR_TEXT], clock()
    return s


async def _read_events(response: httpx.Response, s: Sample, clock: Callable[[], float]) -> None:
    chunks = 0
    last: float | None = None
    usage: dict[str, Any] | None = None
    async for line in response.aiter_lines():
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            break
        try:
            event = json.loads(data)
        except json.JSONDecodeError:
            s.status, s.error, s.end_s = HTTP_ERROR, f"not JSON in the stream: {data[:80]}", clock()
            return
        if not isinstance(event, dict) or "error" in event:
            s.status, s.error, s.end_s = HTTP_ERROR, error_message(json.dumps(event)), clock()
            return
        tier = event.get("service_tier")
        if isinstance(tier, str):
            s.served_tier = ANSWERED.get(tier, tier)
        if isinstance(event.get("usage"), dict):
            usage = event["usage"]
        if _has_content(event):
            now = clock()
            if last is None:
                s.first_token_s = now
            else:
                s.gaps_s.append(now - last)
            last = now
            chunks += 1
    s.end_s = clock()
    if usage is not None:
        s.prompt_tokens = int(usage.get("prompt_tokens") or 0)
        s.completion_tokens = int(usage.get("completion_tokens") or 0)
        s.tokens_from = "usage"
    else:
        s.prompt_tokens, s.completion_tokens, s.tokens_from = (
            s.planned_input_tokens,
            chunks,
            "counted",
        )
    if s.first_token_s is None:
        s.status, s.error = HTTP_ERROR, "the stream ended without any content"
    else:
        s.status = OK


def _has_content(event: dict[str, Any]) -> bool:
    for choice in event.get("choices") or ():
        delta = choice.get("delta") or {}
        if delta.get("content") or delta.get("reasoning_content") or choice.get("text"):
            return True
    return False


def error_message(text: str) -> str:
    """The message of an OpenAI-style error body, else the start of the body."""
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError:
        return text[:ERROR_TEXT]
    error = parsed.get("error") if isinstance(parsed, dict) else None
    message = error.get("message") if isinstance(error, dict) else None
    if isinstance(message, str):
        return message[:ERROR_TEXT]
    if isinstance(error, str):
        return error[:ERROR_TEXT]
    return text[:ERROR_TEXT]
