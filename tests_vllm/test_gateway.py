"""The floor end to end: the openai client -> our gateway -> real vLLM -> the ledger."""

from __future__ import annotations

import time
from collections.abc import Iterator

import openai
import pytest
from gateway_thread import REPLICA, Gateway, gateway
from vllm_process import VllmServer

from tokenfactory.catalog import Catalog
from tokenfactory.ledger import UsageEvent

LEDGER_DEADLINE_S = 30.0
MESSAGES = [{"role": "user", "content": "What does a token cost?"}]


@pytest.fixture(scope="module")
def gw(
    vllm: VllmServer, catalog: Catalog, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    with gateway(vllm, catalog, tmp_path_factory.mktemp("gateway")) as running:
        yield running


def ledger_event(gw: Gateway, request_id: str) -> UsageEvent:
    """The request's ledger event, once the gateway has written it."""
    limit = time.monotonic() + LEDGER_DEADLINE_S
    while (event := gw.ledger.event(request_id)) is None:
        assert time.monotonic() < limit, f"no ledger event for {request_id}"
        time.sleep(0.02)  # the gateway writes the event as the stream ends
    return event


@pytest.mark.parametrize("service_tier", [None, "priority", "flex"])
def test_a_streamed_chat_is_billed_with_vllms_own_counts(
    gw: Gateway, vllm: VllmServer, service_tier: str | None
) -> None:
    _, key = gw.ledger.create_key(f"tenant-{service_tier}")
    client = openai.OpenAI(base_url=gw.v1, api_key=key, max_retries=0, timeout=120)
    stream = client.chat.completions.create(
        model=vllm.model,
        messages=MESSAGES,  # type: ignore[arg-type]
        max_tokens=9,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
        **({"service_tier": service_tier} if service_tier else {}),  # type: ignore[arg-type]
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    usage = chunks[-1].usage
    assert usage is not None and usage.completion_tokens == 9 and len(text) == 9

    # The same request straight to vLLM: the gateway passed vLLM's counts on unchanged.
    with openai.OpenAI(base_url=vllm.v1, api_key="unused", max_retries=0) as direct:
        answer = direct.chat.completions.create(
            model=vllm.model,
            messages=MESSAGES,
            max_tokens=9,
            temperature=0,  # type: ignore[arg-type]
        )
    assert answer.usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens) == (
        answer.usage.prompt_tokens,
        answer.usage.completion_tokens,
    )
    assert text == answer.choices[0].message.content  # greedy: the same reply

    event = ledger_event(gw, chunks[0].id)
    assert event.replica == REPLICA and event.outcome == "ok"
    assert (event.input_tokens, event.output_tokens) == (
        answer.usage.prompt_tokens,
        answer.usage.completion_tokens,
    )
    # The last chunk names the tier billed; a realtime request that missed its latency
    # objective (a busy machine) is billed as standard, so that one may differ.
    asked = {None: "standard", "priority": "realtime", "flex": "flex"}[service_tier]
    billed = {"priority": "realtime", "default": "standard", "flex": "flex"}
    assert event.tier_served == billed[str(chunks[-1].service_tier)]
    assert event.tier_served in (asked, "standard")
    assert event.tier_served == asked or asked == "realtime"
