"""OpenAI's request shapes for the endpoints the floor serves, and its response shapes.

Unknown parameters are refused (as OpenAI does) rather than silently dropped; parameters
the floor cannot honour (n > 1, logprobs, echo) are refused with the parameter named.
"""

from __future__ import annotations

import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

ServiceTier = Literal["auto", "default", "flex", "priority", "scale"]


class StreamOptions(BaseModel):
    """`stream_options`: only include_usage exists."""

    model_config = ConfigDict(extra="forbid")
    include_usage: bool = False


class Message(BaseModel):
    """One chat message; content as text or as OpenAI's list of text parts."""

    model_config = ConfigDict(extra="allow")
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[dict[str, Any]] | None = None

    def text(self) -> str:
        """The message's text, parts joined."""
        if isinstance(self.content, list):
            return "".join(str(p.get("text", "")) for p in self.content if p.get("type") == "text")
        return self.content or ""


class _Common(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    service_tier: ServiceTier | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    n: int = Field(default=1, ge=1, le=1)
    # OpenAI's bounds: up to 4 stop sequences, a 64-bit seed, 16 metadata pairs.
    stop: str | list[str] | None = None
    seed: int | None = Field(default=None, ge=-(2**63), lt=2**63)
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    user: str | None = Field(default=None, max_length=256)
    metadata: dict[str, str] | None = Field(default=None, max_length=16)

    @field_validator("stop")
    @classmethod
    def _four_stops(cls, stop: str | list[str] | None) -> str | list[str] | None:
        if isinstance(stop, list) and len(stop) > 4:
            raise ValueError("give at most 4 stop sequences")
        return stop

    def params(self) -> dict[str, Any]:
        """Sampling parameters passed to the engine, only those given."""
        keys = ("temperature", "top_p", "stop", "seed", "presence_penalty", "frequency_penalty")
        return {k: getattr(self, k) for k in keys if getattr(self, k) is not None}


class ChatRequest(_Common):
    """POST /v1/chat/completions."""

    messages: list[Message] = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)

    @property
    def limit(self) -> int | None:
        """The output cap the client asked for, under either name."""
        return self.max_completion_tokens or self.max_tokens

    def prompt_text(self) -> str:
        """All message text, for estimates and for engines without a token count."""
        return "\n".join([m.text() for m in self.messages])


class CompletionRequest(_Common):
    """POST /v1/completions."""

    prompt: str | list[str]
    max_tokens: int = Field(default=16, ge=1)
    echo: Literal[False] = False
    logprobs: None = None
    suffix: None = None

    @model_validator(mode="after")
    def _one_prompt(self) -> CompletionRequest:
        if isinstance(self.prompt, list) and len(self.prompt) != 1:
            raise ValueError("prompt: give one prompt (a string or a list of one string)")
        return self

    @property
    def limit(self) -> int:
        """The output cap."""
        return self.max_tokens

    def prompt_text(self) -> str:
        """The prompt as one string."""
        return self.prompt if isinstance(self.prompt, str) else self.prompt[0]


Call = ChatRequest | CompletionRequest


def usage_dict(prompt: int, completion: int, cached: int) -> dict[str, Any]:
    """OpenAI's usage object."""
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached},
    }


def chat_chunk(
    rid: str, model: str, tier: str, delta: dict[str, Any], finish: str | None, created: int
) -> dict[str, Any]:
    """One `chat.completion.chunk`."""
    return {
        "id": rid,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "service_tier": tier,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
    }


def completion_chunk(
    rid: str, model: str, tier: str, text: str, finish: str | None, created: int
) -> dict[str, Any]:
    """One streamed `text_completion`."""
    return {
        "id": rid,
        "object": "text_completion",
        "created": created,
        "model": model,
        "service_tier": tier,
        "choices": [{"index": 0, "text": text, "finish_reason": finish, "logprobs": None}],
    }


def usage_chunk(
    rid: str, model: str, tier: str, kind: str, usage: dict[str, Any]
) -> dict[str, Any]:
    """The final streamed chunk with `stream_options.include_usage`: no choices, usage."""
    obj = "chat.completion.chunk" if kind == "chat" else "text_completion"
    return {
        "id": rid,
        "object": obj,
        "created": int(time.time()),
        "model": model,
        "service_tier": tier,
        "choices": [],
        "usage": usage,
    }


def full_response(
    rid: str, model: str, tier: str, kind: str, text: str, finish: str, usage: dict[str, Any]
) -> dict[str, Any]:
    """A whole non-streamed response."""
    if kind == "chat":
        choice: dict[str, Any] = {
            "index": 0,
            "message": {"role": "assistant", "content": text},
            "finish_reason": finish,
            "logprobs": None,
        }
        obj = "chat.completion"
    else:
        choice = {"index": 0, "text": text, "finish_reason": finish, "logprobs": None}
        obj = "text_completion"
    return {
        "id": rid,
        "object": obj,
        "created": int(time.time()),
        "model": model,
        "service_tier": tier,
        "choices": [choice],
        "usage": usage,
    }
