"""Running engine streams in tests: collect deltas and usage, build requests."""

from __future__ import annotations

from tokenfactory.engines.base import Delta, Engine, EngineRequest, Usage


async def collect(engine: Engine, request: EngineRequest) -> tuple[list[Delta], list[Usage]]:
    """Run a stream to its end: its deltas and usages."""
    deltas: list[Delta] = []
    usages: list[Usage] = []
    async for item in engine.stream(request):
        if isinstance(item, Delta):
            deltas.append(item)
        else:
            usages.append(item)
    return deltas, usages


def text_of(deltas: list[Delta]) -> str:
    """The generated text."""
    return "".join(d.text for d in deltas)


def completion(prompt: str, max_tokens: int, **params: object) -> EngineRequest:
    """A completion request for the engine under test."""
    return EngineRequest(
        "t", "tiny", "completion", prompt=prompt, max_tokens=max_tokens, params=params
    )


def chat(
    content: str, max_tokens: int, *, continuation: str = "", **params: object
) -> EngineRequest:
    """A one-message chat request for the engine under test."""
    messages = [{"role": "user", "content": content}]
    return EngineRequest(
        "t",
        "tiny",
        "chat",
        messages=messages,
        max_tokens=max_tokens,
        params=params,
        continuation=continuation,
    )
