"""Running our adapter's streams in tests: build requests, collect deltas and usage."""

from __future__ import annotations

from tokenfactory.engines.base import Delta, Engine, EngineRequest, Usage

# Greedy decoding: the same prompt gives the same tokens, which the tests compare.
GREEDY = {"temperature": 0.0}


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


def completion(
    prompt: str, max_tokens: int, *, priority: int = 0, **params: object
) -> EngineRequest:
    """A greedy completion request."""
    return EngineRequest(
        "t",
        "tiny-llama",
        "completion",
        prompt=prompt,
        max_tokens=max_tokens,
        params={**GREEDY, **params},
        priority=priority,
    )


def chat(
    content: str, max_tokens: int, *, continuation: str = "", priority: int = 0, **params: object
) -> EngineRequest:
    """A greedy one-message chat request."""
    return EngineRequest(
        "t",
        "tiny-llama",
        "chat",
        messages=[{"role": "user", "content": content}],
        max_tokens=max_tokens,
        params={**GREEDY, **params},
        priority=priority,
        continuation=continuation,
    )
