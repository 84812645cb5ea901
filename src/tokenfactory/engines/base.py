"""What the gateway asks of any engine: stream a request, count tokens, report load.

An engine adapter hides how one kind of server is spoken to. Streams are async
generators: closing one (the gateway preempts a request, or its client went away)
aborts the request at the engine.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol


@dataclass(frozen=True, slots=True)
class EngineRequest:
    """One generation, as the gateway hands it to an engine.

    messages (chat) or prompt (completion); params are passed through untouched
    (temperature, top_p, stop, seed, ...); priority goes to engines that schedule by one
    (vLLM: lower runs first); continuation is text already generated for this request
    before a preemption, which the engine must continue rather than repeat.
    """

    request_id: str
    model: str
    kind: Literal["chat", "completion"]
    messages: list[dict[str, Any]] | None = None
    prompt: str | None = None
    max_tokens: int | None = None
    params: dict[str, Any] = field(default_factory=dict)
    priority: int = 0
    continuation: str = ""


@dataclass(frozen=True, slots=True)
class Delta:
    """The text pieces that arrived together, one per token; the last carries the finish.

    An engine sends tokens in bursts (a busy server, many per read): what arrived at once
    travels the gateway as one item, so each layer's cost is paid per burst, not per
    token. The pieces stay apart because clients get one event per token all the same.
    A piece may be empty (a token that is part of a character, or an opening chunk with
    no text yet); a closing chunk that carries only the finish reason adds none.
    """

    pieces: tuple[str, ...]
    finish_reason: str | None = None

    @property
    def text(self) -> str:
        """The pieces' text, joined."""
        return "".join(self.pieces)


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts the engine reports at the end of a request."""

    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0


@dataclass(frozen=True, slots=True)
class Load:
    """An engine's own load signals, where it exposes them (vLLM's /metrics)."""

    running: int
    waiting: int
    kv_usage: float  # share of the KV cache in use, 0..1


class EngineError(Exception):
    """The engine failed: unreachable, timed out, or answered with an error."""

    def __init__(self, message: str, *, started: bool = False, status: int | None = None):
        super().__init__(message)
        self.started = started  # whether any token had been streamed before it failed
        self.status = status  # the engine's HTTP status, if it answered


class Engine(Protocol):
    """An inference engine the gateway can send requests to."""

    name: str
    supports_continuation: bool  # can resume a preempted request from `continuation`

    async def start(self) -> None:
        """Connect (or launch) and wait until the engine serves."""
        ...

    async def stop(self) -> None:
        """Disconnect (or terminate what was launched)."""
        ...

    def stream(self, request: EngineRequest) -> AsyncGenerator[Delta | Usage, None]:
        """Generated text as it comes, then Usage if the engine reports it."""
        ...

    async def count_tokens(self, text: str) -> int:
        """Tokens `text` takes in this engine's tokenizer (for engines without usage)."""
        ...

    async def load(self) -> Load | None:
        """Current load signals, or None where the engine exposes none."""
        ...

    async def healthy(self) -> bool:
        """Whether the engine answers its health check."""
        ...
