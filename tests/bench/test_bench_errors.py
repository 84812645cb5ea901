"""Bad endpoints and bad input: bench reports the errors, exits non-zero, never hangs."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from bench_helpers import MODEL, bench_json
from floor_helpers import Gateway
from servers import free_port, serving
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tokenfactory import workload


def _event(data: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(data).encode() + b"\n\n"


def _chunk(text: str) -> dict[str, Any]:
    return {
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": {"content": text}}],
    }


def _broken_endpoint() -> Starlette:
    """An OpenAI-style server that fails in the ways bench must survive, chosen by max_tokens:
    1 answers 500, 2 breaks off its stream with an error event, 3 streams three chunks
    and no usage."""

    async def models(request: Request) -> Response:
        return JSONResponse({"object": "list", "data": [{"id": MODEL, "object": "model"}]})

    async def chat(request: Request) -> Response:
        mode = (await request.json())["max_tokens"]
        if mode == 1:
            return JSONResponse({"error": {"message": "engine on fire"}}, status_code=500)

        async def events() -> AsyncIterator[bytes]:
            yield _event(_chunk("one "))
            if mode == 2:
                yield _event({"error": {"message": "engine died mid-stream"}})
                return
            yield _event(_chunk("two "))
            yield _event(_chunk("three"))
            yield b"data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    routes = [Route("/v1/models", models), Route("/v1/chat/completions", chat, methods=["POST"])]
    return Starlette(routes=routes)


@pytest.fixture
def broken() -> Iterator[str]:
    with serving(_broken_endpoint()) as url:
        yield url + "/v1"


def test_an_unreachable_endpoint_exits_1_at_once(run: Callable[..., Any]) -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"  # nobody listens there
    began = time.monotonic()
    result = run(
        "bench",
        "--url",
        url,
        "--model",
        MODEL,
        "--requests",
        "5",
        "--input-tokens",
        "10",
        "--output-tokens",
        "5",
    )
    assert time.monotonic() - began < 10
    assert result.code == 1
    assert result.err.startswith(f"error: {url} is unreachable: ConnectError")


def test_an_erroring_endpoint_is_reported_and_stops_the_run(
    run: Callable[..., Any], broken: str
) -> None:
    # 1000 requests to an endpoint that answers 500: bench gives up after 20 in a row.
    began = time.monotonic()
    code, s = bench_json(
        run,
        f"--url {broken} --model {MODEL} --concurrency 4 --requests 1000 "
        "--input-tokens 10 --output-tokens 1",
    )
    assert time.monotonic() - began < 30
    assert code == 1
    assert s["stopped"] == "failures"
    assert 20 <= s["by_status"]["http_error"] < 1000
    assert s["requests_completed"] == 0
    assert s["error_messages"][0]["message"] == "HTTP 500: engine on fire"


def test_an_error_mid_stream_fails_the_request_with_its_message(
    run: Callable[..., Any], broken: str
) -> None:
    code, s = bench_json(
        run, f"--url {broken} --model {MODEL} --requests 3 --input-tokens 10 --output-tokens 2"
    )
    assert code == 1
    assert s["by_status"]["http_error"] == 3
    assert s["error_messages"] == [{"message": "engine died mid-stream", "count": 3}]


def test_an_endpoint_without_usage_has_its_chunks_counted(
    run: Callable[..., Any], broken: str
) -> None:
    code, s = bench_json(
        run, f"--url {broken} --model {MODEL} --requests 4 --input-tokens 10 --output-tokens 3"
    )
    assert code == 0
    assert s["tokens"]["counted"] == 4 and s["tokens"]["from_usage"] == 0
    assert s["tokens"]["output"] == 4 * 3  # three content chunks each
    assert s["tokens"]["input"] == 4 * 10  # the planned prompt, for want of a count


def test_429s_are_counted_per_tier_and_are_no_failure(
    run: Callable[..., Any], gateway: Gateway
) -> None:
    # 1000 tokens a minute; each request is estimated at 100 + 50: the first few pass.
    key = gateway.key(tokens_per_minute=1000)
    code, s = bench_json(
        run,
        f"--url {gateway.v1} --model {MODEL} --api-key {key} --requests 20 "
        "--input-tokens 100 --output-tokens 50",
    )
    assert code == 0
    refused, done = s["by_status"]["rate_limited"], s["requests_completed"]
    assert refused > 0 and done > 0 and refused + done == 20
    assert s["per_tier"]["standard"]["refused"] == refused
    assert s["per_tier"]["standard"]["slo_attainment"] == pytest.approx(
        done / 20
    )  # the standard tier has objectives a 20x twin meets; refusals miss them
    assert "rate limit of 1000 tokens per minute" in s["error_messages"][0]["message"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ("--qps -1 --input-tokens 5 --output-tokens 5", "--qps must be a positive number"),
        ("--qps 1 --concurrency 2 --input-tokens 5 --output-tokens 5", "not both"),
        ("--requests 0 --input-tokens 5 --output-tokens 5", "--requests must be at least 1"),
        ("--input-tokens 5 --output-tokens 5 --tiers batch=1", "tier 'batch' cannot be sent"),
        ("--input-tokens 5 --output-tokens 5 --tiers fast=1", "unknown tier"),
        ("--input-tokens 5 --output-tokens 5 --tiers standard", "not like realtime=0.2"),
        ("--input-tokens 5 --output-tokens 5 --compare-sim", "--compare-sim needs a scenario"),
        ("--input-tokens 5", "give --input-tokens and --output-tokens"),
    ],
)
def test_bad_flags_are_one_line_and_exit_2(
    run: Callable[..., Any], args: str, message: str
) -> None:
    result = run("bench", "--url", "http://127.0.0.1:9/v1", "--model", MODEL, *args.split())
    assert result.code == 2
    assert result.err.startswith("error: ") and message in result.err
    assert result.err.count("\n") == 1


def test_a_trace_asking_for_batch_is_refused_before_anything_is_sent(
    run: Callable[..., Any], scenario: Callable[..., Path], tmp_path: Path
) -> None:
    workload.write_trace(tmp_path / "trace.csv", [workload.Request(0, 0.0, 10, 5, "batch")])
    path = scenario(f'[workload]\ntrace = "{tmp_path / "trace.csv"}"\n')
    result = run("bench", str(path), "--url", "http://127.0.0.1:9/v1")
    assert result.code == 2
    assert result.err == (
        "error: the workload: tier 'batch' cannot be sent as a chat completion (bench sends "
        "realtime, standard, flex; batch goes through the Batch API)\n"
    )
