"""bench against a real twin engine over HTTP: open loops, closed loops, sessions, agents."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from bench_helpers import MODEL, bench_json

from tokenfactory.bench import BenchRun, Bounds, Endpoint, run_bench
from tokenfactory.bench.sample import Sample
from tokenfactory.workload import (
    AgentLoops,
    ChatSessions,
    ClosedLoop,
    Composite,
    Fixed,
    Ids,
    Request,
    TierMix,
    poisson,
    write_trace,
)

# How late the client may send a request that is due: one event-loop turn, on a machine
# whose few cores the twin, the client and other tests share.
LAG_S = 0.25


def test_a_poisson_run_measures_every_request_with_the_endpoints_usage(
    run: Callable[..., object], twin: str
) -> None:
    code, s = bench_json(
        run,
        f"--url {twin} --model {MODEL} --qps 40 --requests 30 --input-tokens 120 "
        "--output-tokens 20 --tiers realtime=0.5,standard=0.5",
    )
    assert code == 0
    assert s["requests"] == s["requests_completed"] == s["by_status"]["ok"] == 30
    # The twin counts four characters a token and runs every request to max_tokens: the
    # prompts bench wrote are exactly the planned size, and usage says so.
    assert s["tokens"] == {
        "input": 30 * 120,
        "output": 30 * 20,
        "mean_input": 120.0,
        "mean_output": 20.0,
        "from_usage": 30,
        "counted": 0,
    }
    tiers = s["per_tier"]
    assert set(tiers) == {"realtime", "standard"}
    assert tiers["realtime"]["requests"] + tiers["standard"]["requests"] == 30
    assert 0 < s["ttft_ms"]["p50"] < s["e2e_ms"]["p50"]
    assert s["tpot_ms"]["p50"] > 0


def _most_in_flight(samples: list[Sample]) -> int:
    events = sorted([(s.start_s, 1) for s in samples] + [(s.end_s or 0.0, -1) for s in samples])
    level = most = 0
    for _, step in events:
        level += step
        most = max(most, level)
    return most


def test_a_closed_loop_keeps_exactly_n_requests_in_flight(twin: str) -> None:
    loop = ClosedLoop(4, 24, Fixed(50), Fixed(10), TierMix(), np.random.default_rng(0), Ids())
    result = asyncio.run(run_bench(loop, Endpoint(twin, MODEL), Bounds()))
    assert len(result.samples) == 24 and all(s.ok for s in result.samples)
    assert _most_in_flight(result.samples) == 4
    # Each client's next request leaves when its last one ended: the 20 follow-ups are
    # each sent at the measured end of an earlier request.
    ends = [s.end_s or 0.0 for s in result.samples]
    follow_ups = sorted(s.start_s for s in result.samples)[4:]
    assert all(min(abs(start - end) for end in ends) < LAG_S for start in follow_ups)


def test_sessions_and_agents_send_their_growing_context(twin: str) -> None:
    rng, ids = np.random.default_rng(3), Ids()
    chats = ChatSessions(
        3, None, Fixed(3), Fixed(0.5), 40, Fixed(30), Fixed(12), TierMix(), rng, ids
    )
    flex = TierMix((("flex", 1.0),))
    agents = AgentLoops(
        2, None, Fixed(4), 60, 20, Fixed(25), Fixed(8), Fixed(30), 0.5, flex, rng, ids
    )
    result = asyncio.run(run_bench(Composite([chats, agents]), Endpoint(twin, MODEL), Bounds()))
    samples = result.samples
    assert len(samples) == 3 * 3 + 2 * 4 and all(s.ok for s in samples)
    loops: dict[int, list[Sample]] = {}
    for s in sorted(samples, key=lambda s: s.start_s):
        assert s.session is not None
        loops.setdefault(s.session, []).append(s)
    assert len(loops) == 5
    for steps in loops.values():
        chat = steps[0].kind == "chat"
        new = 30 if chat else 25  # the user's message, or the tool's result
        for before, after in itertools.pairwise(steps):
            # The endpoint read the whole conversation: the earlier prompt, its answer, the
            # new turn.
            assert after.prompt_tokens == before.prompt_tokens + before.completion_tokens + new
            assert before.end_s is not None
            gap = after.start_s - before.end_s
            assert gap >= 0.5 if chat else gap < LAG_S  # think time, or an agent at once
    assert {s.tier for s in samples if s.kind == "agent"} == {"flex"}


def test_duration_cuts_the_run_and_leaves_unfinished_requests_out(
    run: Callable[..., object], twin: str
) -> None:
    # A 400-token answer takes the 20x twin about 0.15 s: 1 s cannot finish 10,000.
    code, s = bench_json(
        run,
        f"--url {twin} --model {MODEL} --concurrency 8 --duration 1 --input-tokens 100 "
        "--output-tokens 400",
    )
    assert code == 0
    assert s["stopped"] == "duration"
    assert 8 <= s["requests_completed"] < 10_000
    assert 1 <= s["by_status"]["unfinished"] <= 8  # the clients' requests in flight at the cut
    assert s["requests"] == s["requests_completed"]  # the cut-off ones were not offered
    assert s["duration_s"] < 1 + LAG_S


def test_open_loop_requests_leave_on_schedule(twin: str) -> None:
    arrivals = poisson(20, 20, Fixed(40), Fixed(5), TierMix(), np.random.default_rng(5), Ids())
    planned = {r.id: r.arrival_s for r in arrivals.initial()}
    result = asyncio.run(run_bench(arrivals, Endpoint(twin, MODEL), Bounds()))
    assert sorted(s.id for s in result.samples) == sorted(planned)
    for s in result.samples:
        assert s.arrival_s == planned[s.id]
        assert 0 <= s.start_s - s.arrival_s < LAG_S


def test_cancelling_a_run_stops_it_and_keeps_what_was_measured(twin: str) -> None:
    loop = ClosedLoop(4, 10_000, Fixed(50), Fixed(200), TierMix(), np.random.default_rng(0), Ids())

    async def main() -> BenchRun:
        runner: asyncio.Task[BenchRun] | None = None
        done = 0

        def seen(s: Sample) -> None:
            nonlocal done
            done += 1
            if done == 6 and runner is not None:
                runner.cancel()  # what asyncio.run does on Ctrl-C

        runner = asyncio.create_task(run_bench(loop, Endpoint(twin, MODEL), Bounds(), seen))
        return await runner

    result = asyncio.run(main())
    assert result.stopped == "interrupted"
    statuses = [s.status for s in result.samples]
    # The requests measured before the cut are kept; those in flight are cut off.
    assert statuses.count("ok") >= 6 and set(statuses) <= {"ok", "unfinished"}
    assert len(statuses) < 100


def test_a_trace_is_replayed_row_by_row(
    run: Callable[..., Any], twin: str, scenario: Callable[..., Path], tmp_path: Path
) -> None:
    rows = [
        Request(0, 0.0, 30, 5, "realtime"),
        Request(1, 0.05, 60, 7, "flex"),
        Request(2, 0.1, 90, 9, "standard", session=1),
        Request(3, 0.5, 90 + 9 + 11, 4, "standard", session=1, prefix_tokens=99, kind="chat"),
    ]
    write_trace(tmp_path / "trace.csv", rows)
    path = scenario(f'[workload]\ntrace = "{tmp_path / "trace.csv"}"\n')
    code, s = bench_json(run, f"{path} --url {twin} --out {tmp_path / 'run'}")
    assert code == 0
    assert s["requests_completed"] == 4
    assert s["tokens"]["input"] == 30 + 60 + 90 + 110
    assert s["tokens"]["output"] == 5 + 7 + 9 + 4
    assert {t: v["requests"] for t, v in s["per_tier"].items()} == {
        "realtime": 1,
        "standard": 2,
        "flex": 1,
    }
