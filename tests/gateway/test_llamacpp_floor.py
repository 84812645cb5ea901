"""The floor over real embedded llama.cpp engines serving a tiny model the test writes."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import httpx
import openai
import pytest
from floor_helpers import MakeGateway, floors

sys.path.insert(0, str(Path(__file__).parent.parent / "engines"))
from tiny_gguf import write_tiny_llama


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_llama(tmp_path_factory.mktemp("gguf") / "tiny.gguf")


def factory(model: Path, replicas: int) -> str:
    return (
        "\n".join(
            f'[[replicas]]\nname = "cpu-{i}"\nengine = "llamacpp"\nmodel = "smollm2-135m"\n'
            f'path = "{model}"\nmax_concurrency = 1\ncost_per_hour = "0.08925"\n'
            for i in range(replicas)
        )
        + '\n[server]\nadmin_key = "admin"\n'
    )


def test_chat_and_completions_over_llamacpp_are_counted_exactly(
    tiny: Path, make_gateway: MakeGateway
) -> None:
    gw = make_gateway(text=factory(tiny, 1))
    c = openai.OpenAI(base_url=gw.v1, api_key=gw.key(), max_retries=0, timeout=120)
    chat = c.chat.completions.create(
        model="smollm2-135m",
        messages=[{"role": "user", "content": "Say something."}],
        max_tokens=10,
    )
    assert chat.usage is not None and chat.usage.completion_tokens == 10
    assert chat.usage.prompt_tokens > 3  # the chat template's tokens plus the message
    chunks = list(
        c.completions.create(
            model="smollm2-135m",
            prompt="abc",
            max_tokens=8,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    streamed = [ch for ch in chunks if ch.choices and ch.choices[0].text]
    usage = chunks[-1].usage
    assert usage is not None and usage.completion_tokens == 8 == len(streamed)
    for rid, out in ((chat.id, 10), (chunks[0].id, 8)):
        event = gw.ledger.event(rid)
        assert event is not None and event.output_tokens == out and event.outcome == "ok"
        # A CPU host's cost: its rate times the time the request held the one place.
        assert event.work_s > 0 and event.replica == "cpu-0"


def test_an_engine_that_dies_mid_request_fails_cleanly_and_traffic_moves_on(
    tiny: Path, make_gateway: MakeGateway
) -> None:
    gw = make_gateway(text=factory(tiny, 2))
    key = gw.key()
    body = {"model": "smollm2-135m", "prompt": "go on", "max_tokens": 1500, "stream": True}
    received, rid, error = 0, "", ""
    with httpx.stream(
        "POST",
        gw.v1 + "/completions",
        json=body,
        timeout=60,
        headers={"Authorization": f"Bearer {key}"},
    ) as r:
        lines = r.iter_lines()
        for line in lines:
            if line.startswith("data: {") and '"text":"' in line and '"text":""' not in line:
                rid = line.split('"id":"', 1)[1].split('"', 1)[0]
                received += 1
                break
        # Kill the engine serving it while it streams: the replica that holds a request.
        serving = next(s for s in floors[-1].dispatcher.replicas if s.running)
        os.killpg(serving.engine.process.pid, signal.SIGKILL)  # type: ignore[attr-defined]
        for line in lines:
            if '"error"' in line:
                error = line
                break
            if line.startswith("data: {") and '"text":"' in line and '"text":""' not in line:
                received += 1
    assert error and "engine" in error
    limit = time.monotonic() + 30
    while gw.ledger.event(rid) is None:
        assert time.monotonic() < limit
        time.sleep(0.01)  # the event is written as the stream ends
    event = gw.ledger.event(rid)
    assert event is not None and event.outcome == "engine_error"
    assert received <= event.output_tokens < 1500  # what was delivered, billed once
    metrics = httpx.get(gw.url + "/metrics").text
    assert 'tokenfactory_replica_healthy{replica="' + event.replica + '"} 0.0' in metrics
    c = openai.OpenAI(base_url=gw.v1, api_key=key, max_retries=0, timeout=60)
    after = c.completions.create(model="smollm2-135m", prompt="still there?", max_tokens=4)
    moved = gw.ledger.event(after.id)
    assert moved is not None and moved.replica != event.replica and moved.output_tokens == 4


def test_a_request_the_engine_refuses_is_the_clients_400_and_costs_nothing(
    tiny: Path, make_gateway: MakeGateway
) -> None:
    """A prompt the gateway's estimate lets through (about four characters a token) but
    the engine finds longer than its context: the engine says 400, and so does the
    gateway, in OpenAI's shape, with the engine's reason; nothing is billed, and the
    replica stays in service (it is the request's fault, not the engine's)."""
    gw = make_gateway(text=factory(tiny, 1))
    key = gw.key()
    headers = {"Authorization": f"Bearer {key}"}
    prompt = "\u00e9\u00df\u00f8" * 400  # 1,200 characters, over 2,048 tokens (2 a character)
    body = {"model": "smollm2-135m", "prompt": prompt, "max_tokens": 4}
    r = httpx.post(gw.v1 + "/completions", json=body, headers=headers, timeout=120)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["type"] == "invalid_request_error" and "engine refused" in error["message"]
    assert "context" in error["message"]
    assert gw.ledger.events() == [] or all(e.revenue_micros == 0 for e in gw.ledger.events())
    ok = httpx.post(
        gw.v1 + "/completions",
        json={"model": "smollm2-135m", "prompt": "abc", "max_tokens": 3},
        headers=headers,
        timeout=120,
    )
    assert ok.status_code == 200 and ok.json()["usage"]["completion_tokens"] == 3
