"""The twin engine as a client sees it: a real server on loopback, the official client.

Each server runs in its own process, so the clients here cannot stall its clock (they
would share a GIL in a thread). Llama 3.1 8B in bf16 on one H100 with vLLM's parameters
takes ~37 ms to prefill 1000 tokens and ~11 ms per decode step; timings are checked
against `PerfModel.step_time` within 30% plus a few ms of loopback and loop jitter.
"""

from __future__ import annotations

import asyncio
import math
import re
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from functools import partial

import httpx
import openai
import pytest
from openai import AsyncOpenAI, OpenAI

from tokenfactory.catalog import Catalog
from tokenfactory.engines.twin import count_tokens, twin_setup
from tokenfactory.perf.model import Batch, PerfModel
from tokenfactory.sched import POLICIES, Job, TierRule
from tokenfactory.sim.clock import Environment
from tokenfactory.sim.realtime import RealtimeEnvironment
from tokenfactory.sim.replica import Replica
from tokenfactory.workload import Request

MODEL = "llama-3.1-8b"
SERVE = """
import socket, sys, uvicorn
from tokenfactory.catalog import load_catalog
from tokenfactory.engines.twin import twin_setup
from tokenfactory.engines.twin_app import create_twin_app
fd, speedup, seqs = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
setup = twin_setup(load_catalog(), "H100-SXM", "llama-3.1-8b", max_num_seqs=seqs)
config = uvicorn.Config(create_twin_app(*setup, speedup), log_level="warning")
uvicorn.Server(config).run(sockets=[socket.socket(fileno=fd)])
"""


def poll(check: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait until `check()` holds, failing after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met before the deadline"
        time.sleep(0.005)


def serve(speedup: float, max_num_seqs: int) -> Iterator[str]:
    """A twin server process on a free loopback port; yields its base URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(512)
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    args = [str(sock.fileno()), str(speedup), str(max_num_seqs)]
    proc = subprocess.Popen(
        [sys.executable, "-W", "error", "-c", SERVE, *args],
        pass_fds=[sock.fileno()],
        stderr=subprocess.PIPE,
        text=True,
    )
    sock.close()
    try:
        with httpx.Client(base_url=url) as http:

            def up() -> bool:
                assert proc.poll() is None, "the twin exited"
                try:
                    return http.get("/health").status_code == 200
                except httpx.TransportError:
                    return False

            poll(up, timeout=30)
            with OpenAI(base_url=f"{url}/v1", api_key="none") as client:
                for _ in range(3):  # warm the server's code paths before anything is timed
                    ask(client, 1000, 4)
        yield url
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=10)
        assert "Traceback" not in err, err


@pytest.fixture(scope="module")
def twin() -> Iterator[str]:
    """The twin at real speed with vLLM's limits."""
    yield from serve(1.0, 256)


@pytest.fixture(scope="module")
def fast_twin() -> Iterator[str]:
    """The twin ten times faster, four sequences at most in a batch."""
    yield from serve(10.0, 4)


@pytest.fixture(scope="module")
def perf(catalog: Catalog) -> PerfModel:
    deployment, efficiency, _ = twin_setup(catalog, "H100-SXM", MODEL)
    return PerfModel(deployment, efficiency)


def ask(client: OpenAI, prompt_tokens: int, max_tokens: int) -> list[float]:
    """Stream one completion; the arrival time of each token after the request went out."""
    t0 = time.perf_counter()
    times = []
    for chunk in client.completions.create(
        model=MODEL,
        prompt="x",
        max_tokens=max_tokens,
        stream=True,
        extra_body={"prompt_tokens": prompt_tokens},
    ):
        if chunk.choices and chunk.choices[0].text:
            times.append(time.perf_counter() - t0)
    return times


def decode_s(perf: PerfModel, n: int, context: float) -> float:
    """A pure decode step of `n` sequences at mean context `context`."""
    return perf.step_time(Batch(0, 0.0, 0.0, n, n * context, n))


def scrape(url: str) -> dict[str, float]:
    """The /metrics samples by name (labels dropped)."""
    return scrape_text(httpx.get(f"{url}/metrics").text)


def scrape_text(text: str) -> dict[str, float]:
    """Samples of a Prometheus text page by name, histogram buckets left out."""
    pairs = re.findall(r"^([a-z_:]+)(?:\{[^}]*\})? (\S+)$", text, re.M)
    return {name: float(value) for name, value in pairs if "bucket" not in name}


def client(url: str) -> OpenAI:
    return OpenAI(base_url=f"{url}/v1", api_key="none", max_retries=0)


def test_chat_answers_synthetic_text_with_usage(twin: str) -> None:
    messages = [{"role": "user", "content": "Say something, please."}]
    with client(twin) as c:
        r = c.chat.completions.create(model=MODEL, messages=messages, max_tokens=7)
        models = c.models.list()
    assert r.choices[0].message.content == "".join(f"twin{i} " for i in range(7))
    assert r.choices[0].finish_reason == "length" and "synthetic" in (r.system_fingerprint or "")
    assert r.usage is not None and r.usage.completion_tokens == 7
    assert r.usage.prompt_tokens == count_tokens("Say something, please.") == 6
    assert [m.id for m in models.data] == [MODEL]


def test_completion_counts_token_ids_exactly_and_streams_usage(twin: str) -> None:
    with client(twin) as c:
        r = c.completions.create(model=MODEL, prompt=[1, 2, 3, 4, 5], max_tokens=3)
        chunks = list(
            c.completions.create(
                model=MODEL, prompt="abcdefghi", max_tokens=5, stream=True,
                stream_options={"include_usage": True},
            )
        )  # fmt: skip
    assert r.usage is not None and (r.usage.prompt_tokens, r.usage.completion_tokens) == (5, 3)
    texts = [ch.choices[0].text for ch in chunks if ch.choices]
    assert texts == [f"twin{i} " for i in range(5)]
    assert chunks[-2].choices[0].finish_reason == "length"
    usage = chunks[-1].usage
    assert usage is not None and (usage.prompt_tokens, usage.completion_tokens) == (3, 5)


def test_streamed_chat_sends_every_token_then_usage(twin: str) -> None:
    with client(twin) as c:
        chunks = list(
            c.chat.completions.create(
                model=MODEL,
                messages=[{"role": "user", "content": "hi"}],
                max_tokens=20,
                stream=True,
                stream_options={"include_usage": True},
            )
        )
    contents = [ch.choices[0].delta.content for ch in chunks if ch.choices]
    assert contents[0] == "" and chunks[0].choices[0].delta.role == "assistant"
    assert len([t for t in contents if t]) == 20
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 20


def test_continuing_a_final_assistant_message_goes_on_counting(twin: str) -> None:
    messages = [
        {"role": "user", "content": "count"},
        {"role": "assistant", "content": "twin0 twin1 twin2 "},
    ]
    body = {"model": MODEL, "messages": messages, "max_tokens": 2, "continue_final_message": True}
    r = httpx.post(f"{twin}/v1/chat/completions", json=body).json()
    assert r["choices"][0]["message"]["content"] == "twin3 twin4 "
    assert r["usage"]["prompt_tokens"] == count_tokens("count" + "twin0 twin1 twin2 ")


def test_a_lone_request_streams_at_the_models_step_times(twin: str, perf: PerfModel) -> None:
    with client(twin) as c:
        runs = [ask(c, 1000, 40) for _ in range(3)]  # three, for a busy machine
    assert all(len(times) == 40 for times in runs)
    ttft = min(times[0] for times in runs)  # a late loop only ever adds time
    tpot = statistics.median((times[-1] - times[0]) / 39 for times in runs)
    prefill = perf.step_time(Batch(1000, 1000 * 1000 / 2, 0, 0, 0, 1))
    expected = sum(decode_s(perf, 1, 1001 + j) for j in range(39)) / 39
    assert 0.7 * prefill < ttft < 1.3 * prefill + 0.005
    assert 0.7 * expected < tpot < 1.3 * expected + 0.002


def test_32_streams_all_finish_slower_each_but_faster_together(twin: str, perf: PerfModel) -> None:
    async def one(c: AsyncOpenAI) -> list[float]:
        stream = await c.completions.create(
            model=MODEL, prompt="x", max_tokens=64, stream=True, extra_body={"prompt_tokens": 1000}
        )
        return [time.perf_counter() async for ch in stream if ch.choices and ch.choices[0].text]

    async def many(n: int) -> tuple[float, list[list[float]]]:
        async with AsyncOpenAI(base_url=f"{twin}/v1", api_key="none") as c:
            t0 = time.perf_counter()
            runs = await asyncio.gather(*(one(c) for _ in range(n)))
            return time.perf_counter() - t0, runs

    def tpot(times: list[float]) -> float:  # the second half: every stream is decoding
        return (times[-1] - times[32]) / (len(times) - 1 - 32)

    wall1, (single,) = asyncio.run(many(1))
    wall32, runs = asyncio.run(many(32))
    assert all(len(r) == 64 for r in runs)
    batched = sum(tpot(r) for r in runs) / len(runs)
    expected = decode_s(perf, 32, 1000 + 48)
    assert 0.7 * expected < batched < 1.3 * expected + 0.003
    assert batched > 1.1 * tpot(single)  # a bigger batch makes each step longer
    assert 64 * 32 / wall32 > 5 * 64 / wall1  # and serves far more tokens per second


def test_metrics_show_a_burst_then_count_its_tokens(fast_twin: str) -> None:
    before = scrape(fast_twin)
    seen: list[dict[str, float]] = []

    async def burst() -> list[list[float]]:
        async with AsyncOpenAI(base_url=f"{fast_twin}/v1", api_key="none") as c:

            async def one() -> list[float]:
                s = await c.completions.create(
                    model=MODEL, prompt="y" * 400, max_tokens=500, stream=True
                )
                return [1.0 async for ch in s if ch.choices and ch.choices[0].text]

            tasks = [asyncio.ensure_future(one()) for _ in range(8)]
            async with httpx.AsyncClient() as http:
                while not (seen and seen[-1]["vllm:num_requests_waiting"] == 4):
                    assert not any(t.done() for t in tasks), "the burst ended unseen"
                    text = (await http.get(f"{fast_twin}/metrics")).text
                    seen.append(scrape_text(text))
            return await asyncio.gather(*tasks)

    runs = asyncio.run(burst())
    after = scrape(fast_twin)
    assert all(len(r) == 500 for r in runs)
    assert seen[-1]["vllm:num_requests_running"] == 4  # max_num_seqs
    assert 0 < seen[-1]["vllm:kv_cache_usage_perc"] < 1
    delta = {k: after[k] - before[k] for k in after}
    assert delta["vllm:generation_tokens_total"] == 8 * 500
    assert delta["vllm:prompt_tokens_total"] == 8 * 100
    assert delta["vllm:time_to_first_token_seconds_count"] == 8
    assert after["vllm:num_requests_running"] == after["vllm:num_requests_waiting"] == 0
    assert after["vllm:kv_cache_usage_perc"] == 0


def test_a_client_leaving_mid_stream_frees_its_slot(twin: str) -> None:
    body = {"model": MODEL, "prompt": "z", "max_tokens": 5000, "stream": True}
    with httpx.Client() as http, http.stream("POST", f"{twin}/v1/completions", json=body) as r:
        events = (line for line in r.iter_lines() if line)
        assert all(next(events).startswith("data: {") for _ in range(5))
        assert scrape(twin)["vllm:num_requests_running"] == 1
    poll(lambda: scrape(twin)["vllm:num_requests_running"] == 0, timeout=5)
    assert scrape(twin)["vllm:kv_cache_usage_perc"] == 0
    # A client waiting for a whole answer that gives up frees its slot too.
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{twin}/v1/completions", json={**body, "stream": False}, timeout=0.2)
    poll(lambda: scrape(twin)["vllm:num_requests_running"] == 0, timeout=5)
    assert scrape(twin)["vllm:kv_cache_usage_perc"] == 0


def test_speedup_10_serves_the_same_request_10_times_faster(twin: str, fast_twin: str) -> None:
    with client(twin) as slow, client(fast_twin) as fast:
        real, quick = ask(slow, 1000, 100)[-1], ask(fast, 1000, 100)[-1]
    assert 7 < real / quick < 13


def test_bad_requests_get_openai_errors(twin: str) -> None:
    with client(twin) as c:
        with pytest.raises(openai.NotFoundError):
            c.completions.create(model="gpt-nothing", prompt="a")
        with pytest.raises(openai.BadRequestError, match="maximum context length"):
            c.completions.create(model=MODEL, prompt="a", max_tokens=200_000)
    r = httpx.post(f"{twin}/v1/chat/completions", content=b"{not json")
    assert r.status_code == 400 and set(r.json()["error"]) == {"message", "type", "param", "code"}
    r = httpx.post(f"{twin}/v1/chat/completions", json={"model": MODEL, "messages": []})
    assert r.status_code == 400 and r.json()["error"]["param"] == "messages"


def test_abort_frees_kv_exactly_wherever_the_request_is(catalog: Catalog) -> None:
    deployment, efficiency, limits = twin_setup(catalog, "H100-SXM", MODEL, max_num_seqs=2)
    env = Environment()
    ended: list[int] = []
    replica = Replica(
        0, env, PerfModel(deployment, efficiency), limits, POLICIES["fcfs"],
        lambda seq, status: ended.append(seq.job.id),
    )  # fmt: skip
    tier = TierRule("standard", 1, 1.0, None, None, math.inf, False)
    for i, prompt in [(1, 300), (0, 20_000), (2, 300), (3, 300)]:
        replica.submit(Request(i, 0.0, prompt, 50), Job(i, tier, 0.0, prompt, 50, 0.0, 0.0))
    assert replica.abort(3) is not None  # waiting
    env.step()  # 1 decodes; 0 starts its prompt (two places at most: 2 waits)
    env.step()  # 0 has a chunk done and the next in flight
    assert replica.prefilling[0].prefilled > 0 and 1 in replica.decoding
    assert replica.abort(0) is not None and replica.abort(1) is not None
    assert replica.abort(1) is None
    env.run()
    assert ended == [2]
    assert replica.kv_used == pytest.approx(0.0, abs=1e-9) and replica.queued_tokens == 0
    assert replica.running == 0 and not replica.waiting and replica.decode_context == 0


def test_realtime_events_run_at_their_wall_times_in_order() -> None:
    async def main() -> list[tuple[str, float]]:
        env = RealtimeEnvironment(speedup=2.0)
        log: list[tuple[str, float]] = []
        env.start()
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        env.at(0.2, lambda: log.append(("late", loop.time() - t0)))
        await asyncio.sleep(0)  # let the driver start waiting for the late event
        env.at(0.1, lambda: log.append(("early", loop.time() - t0)))  # wakes it sooner
        done = loop.create_future()
        env.at(0.3, lambda: done.set_result(None))
        await done
        await env.stop()
        return log

    log = asyncio.run(main())
    assert [name for name, _ in log] == ["early", "late"]
    # Never early; late by less than the wait for the later event, which would mean no wake.
    assert 0.049 < log[0][1] < 0.09 and 0.099 < log[1][1] < 0.14


def test_the_twin_command_names_an_unknown_model_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from tokenfactory.cli import main

    monkeypatch.setattr(sys, "argv", ["tokenfactory", "twin", "--gpu", "H100-SXM", "--model", "x"])
    with pytest.raises(SystemExit) as e:
        main()
    assert e.value.code == 2 and "unknown model" in capsys.readouterr().err


def test_one_step_runs_keep_the_simulators_timings(catalog: Catalog) -> None:
    deployment, efficiency, limits = twin_setup(catalog, "H100-SXM", MODEL)
    tier = TierRule("standard", 1, 1.0, None, None, math.inf, False)
    arrivals = [(0.0, 800, 120), (0.05, 3000, 40), (0.3, 200, 300), (0.31, 9000, 10)]

    def ends(on_step: Callable[[], None] | None) -> list[tuple[int, float, float | None]]:
        env, out = Environment(), []
        replica = Replica(
            0, env, PerfModel(deployment, efficiency), limits, POLICIES["fcfs"],
            lambda seq, _: out.append((seq.job.id, env.now, seq.first_token_s)), on_step,
        )  # fmt: skip
        for i, (t, p, o) in enumerate(arrivals):
            req, job = Request(i, t, p, o), Job(i, tier, t, p, o, 0.0, 0.0)
            env.at(t, partial(replica.submit, req, job))
        env.run()
        return out

    steps: list[int] = []
    stepped = ends(lambda: steps.append(1))
    assert len(steps) > 300  # one event per step
    for (i, end, first), (j, end_s, first_s) in zip(ends(None), stepped, strict=True):
        assert i == j and end == pytest.approx(end_s, rel=1e-9)
        assert first == pytest.approx(first_s, rel=1e-9)
