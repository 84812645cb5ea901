"""The official `openai` client straight against vLLM: what our adapter relies on is there."""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest
from vllm_process import VllmServer


@pytest.fixture(scope="module")
def client(vllm: VllmServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=vllm.v1, api_key="unused", max_retries=0, timeout=60) as c:
        yield c


def test_chat_stream_ends_with_usage(client: openai.OpenAI, vllm: VllmServer) -> None:
    stream = client.chat.completions.create(
        model=vllm.model,
        messages=[{"role": "user", "content": "Hello"}],
        max_tokens=7,
        temperature=0,  # sampling could pick a special token, which the text leaves out
        stream=True,
        stream_options={"include_usage": True},
        extra_body={"ignore_eos": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert len(text) == 7
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    usage = chunks[-1].usage
    assert usage is not None and usage.completion_tokens == 7
    assert all(c.usage is None for c in chunks[:-1])  # usage comes once, at the end


def test_completion_stream_ends_with_usage(client: openai.OpenAI, vllm: VllmServer) -> None:
    stream = client.completions.create(
        model=vllm.model,
        prompt="Once upon",
        max_tokens=5,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
        extra_body={"ignore_eos": True},
    )
    chunks = list(stream)
    assert len("".join(c.choices[0].text for c in chunks if c.choices)) == 5
    usage = chunks[-1].usage
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens) == (1 + len("Once upon"), 5)


def test_models_lists_the_served_name(client: openai.OpenAI, vllm: VllmServer) -> None:
    assert [m.id for m in client.models.list()] == [vllm.model]
