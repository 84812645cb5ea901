"""One replica, batch by batch: event times against `step_time` of the batches computed by hand.

The default deployment (conftest) is Llama 3.1 8B on one H100 with a hand-made efficiency;
the engine limits are vLLM's defaults (8192-token budget, 256 sequences, chunked prefill).
"""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from tokenfactory.perf.model import Batch, PerfModel
from tokenfactory.sim.fleet import Outcome
from tokenfactory.sim.replica import EngineLimits
from tokenfactory.sim.run import Setup, simulate, start
from tokenfactory.workload import (
    ChatSessions,
    Composite,
    Fixed,
    Ids,
    OpenLoop,
    Request,
    TierMix,
    poisson,
)

PROMPT, OUT = 1000, 200  # the long request of most tests


def prefill_s(
    perf: PerfModel,
    chunk: int,
    done: int = 0,
    finishes: bool = True,
    contexts: tuple[int, ...] = (),
) -> float:
    """A step with one prompt chunk (after `done` tokens) beside decoders at `contexts`."""
    n = len(contexts)
    batch = Batch(chunk, chunk * done + chunk * chunk / 2, done, n, sum(contexts), n + finishes)
    return perf.step_time(batch)


def decode_s(perf: PerfModel, *contexts: int) -> float:
    """A pure decode step of sequences at these context lengths."""
    n = len(contexts)
    return perf.step_time(Batch(0, 0.0, 0.0, n, sum(contexts), n))


def boundaries(perf: PerfModel, prompt: int, output: int) -> list[float]:
    """A lone request's step ends: the prefill step, then each decode step one by one."""
    ends = [prefill_s(perf, prompt)]
    for j in range(output - 1):
        ends.append(ends[-1] + decode_s(perf, prompt + 1 + j))
    return ends


def by_id(setup: Setup) -> dict[int, Outcome]:
    return {o.req.id: o for o in simulate(setup).fleet.outcomes}


def test_a_lone_request_takes_one_prefill_step_then_output_minus_one_decode_steps(
    make_setup, perf
) -> None:
    o = by_id(make_setup([Request(0, 0.0, PROMPT, OUT)]))[0]
    ends = boundaries(perf, PROMPT, OUT)
    assert o.status == "ok" and o.output_tokens == OUT and o.preemptions == 0
    assert o.first_token_s == pytest.approx(prefill_s(perf, PROMPT), rel=1e-12)
    # The replica runs the 199 decode steps as one event; it must end where stepping does.
    assert len(ends) == OUT
    assert o.end_s == pytest.approx(ends[-1], rel=1e-12)
    assert o.end_s > o.first_token_s + (OUT - 1) * decode_s(perf, PROMPT + 1)  # context grows
    assert o.share_s == pytest.approx(o.end_s, rel=1e-12)  # alone, it pays every step whole


def test_a_lone_request_arriving_later_is_shifted_by_its_arrival(make_setup, perf) -> None:
    o = by_id(make_setup([Request(7, 2.5, 300, 1)]))[7]
    assert o.first_token_s == pytest.approx(2.5 + prefill_s(perf, 300), rel=1e-12)
    assert o.end_s == o.first_token_s  # one output token: the prefill step samples it


@pytest.mark.parametrize("k", [0, 1, 50, OUT - 3])
def test_an_arrival_during_a_decode_run_starts_at_the_next_step_boundary(
    make_setup, perf, k: int
) -> None:
    """B arrives inside decode step k+1 of A's run; it joins at that step's end, not later."""
    ends = boundaries(perf, PROMPT, OUT)  # ends[i]: after i decode steps
    t_b = ends[k] + 0.3 * (ends[k + 1] - ends[k])
    pb, ob = 100, 10
    got = by_id(make_setup([Request(0, 0.0, PROMPT, OUT), Request(1, t_b, pb, ob)]))
    start = ends[k + 1]
    a_ctx = PROMPT + 1 + (k + 1)  # A's context in the step that prefills B
    b_first = start + prefill_s(perf, pb, contexts=(a_ctx,))
    assert got[1].first_token_s == pytest.approx(b_first, rel=1e-12)
    # Then both decode, one token each per step, until one is done; then the other alone.
    a_left, b_left = OUT - 1 - (k + 2), ob - 1  # decode steps each still needs
    end = {0: b_first if a_left == 0 else 0.0, 1: 0.0}
    t, a, b = b_first, a_ctx + 1, pb + 1
    while a_left or b_left:
        t += decode_s(perf, *([a] if a_left else []), *([b] if b_left else []))
        if a_left:
            a, a_left = a + 1, a_left - 1
            end[0] = t if a_left == 0 else end[0]
        if b_left:
            b, b_left = b + 1, b_left - 1
            end[1] = t if b_left == 0 else end[1]
    assert got[0].end_s == pytest.approx(end[0], rel=1e-12)
    assert got[1].end_s == pytest.approx(end[1], rel=1e-12)
    assert got[0].output_tokens == OUT and got[1].output_tokens == ob


def test_an_arrival_during_the_last_decode_step_starts_when_the_first_finishes(
    make_setup, perf
) -> None:
    ends = boundaries(perf, PROMPT, OUT)
    t_b = ends[-2] + 0.5 * (ends[-1] - ends[-2])
    got = by_id(make_setup([Request(0, 0.0, PROMPT, OUT), Request(1, t_b, 100, 1)]))
    assert got[0].end_s == pytest.approx(ends[-1], rel=1e-12)
    assert got[1].first_token_s == pytest.approx(ends[-1] + prefill_s(perf, 100), rel=1e-12)


def test_an_arrival_during_a_prefill_step_waits_for_that_step(make_setup, perf) -> None:
    first = prefill_s(perf, PROMPT)
    got = by_id(make_setup([Request(0, 0.0, PROMPT, OUT), Request(1, first / 2, 200, 5)]))
    assert got[0].first_token_s == pytest.approx(first, rel=1e-12)
    expected = first + prefill_s(perf, 200, contexts=(PROMPT + 1,))
    assert got[1].first_token_s == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(("prompt", "budget"), [(20000, 8192), (16384, 8192), (1500, 512)])
def test_chunked_prefill_splits_a_long_prompt_into_budget_sized_steps(
    make_setup, perf, prompt: int, budget: int
) -> None:
    setup = make_setup([Request(0, 0.0, prompt, 3)], limits=EngineLimits(max_batched_tokens=budget))
    o = by_id(setup)[0]
    steps = math.ceil(prompt / budget)
    t, done = 0.0, 0
    for i in range(steps):
        chunk = min(budget, prompt - done)
        t += prefill_s(perf, chunk, done, finishes=i == steps - 1)
        done += chunk
    assert o.first_token_s == pytest.approx(t, rel=1e-12)
    assert o.first_token_s > prefill_s(perf, prompt)  # chunks re-read the earlier KV


def test_without_chunking_a_prompt_within_budget_is_one_step(make_setup, perf) -> None:
    limits = EngineLimits(max_batched_tokens=2048, chunked_prefill=False)
    o = by_id(make_setup([Request(0, 0.0, 2000, 2)], limits=limits))[0]
    assert o.first_token_s == pytest.approx(prefill_s(perf, 2000), rel=1e-12)


def test_max_num_seqs_one_makes_the_second_request_wait_for_the_first(make_setup, perf) -> None:
    reqs = [Request(0, 0.0, PROMPT, OUT), Request(1, 0.0, 300, 20)]
    got = by_id(make_setup(reqs, limits=EngineLimits(max_num_seqs=1)))
    ends = boundaries(perf, PROMPT, OUT)
    assert got[0].end_s == pytest.approx(ends[-1], rel=1e-12)
    assert got[1].first_token_s == pytest.approx(ends[-1] + prefill_s(perf, 300), rel=1e-12)
    # With two places it joins as soon as the first prompt's step is over.
    got = by_id(make_setup(reqs, limits=EngineLimits(max_num_seqs=2)))
    expected = ends[0] + prefill_s(perf, 300, contexts=(PROMPT + 1,))
    assert got[1].first_token_s == pytest.approx(expected, rel=1e-12)


def drained(setup: Setup) -> tuple[list[Outcome], int]:
    """Run a setup; check every replica ends empty; the outcomes and the preemptions."""
    result = simulate(setup)
    for r in result.fleet.replicas:
        assert r.kv_used == pytest.approx(0.0, abs=1e-9)
        assert r.decode_context == 0 and r.queued_tokens == 0 and r.run is None
        assert not r.waiting and not r.prefilling and not r.decoding
    # Every step's time is split among the sequences in it: the shares add up to the busy time.
    shares = sum(o.share_s for o in result.fleet.outcomes)
    assert shares == pytest.approx(sum(r.busy_s for r in result.fleet.replicas), rel=1e-9)
    return result.fleet.outcomes, result.summary["preemptions"]


def test_kv_exhaustion_preempts_by_recompute_and_every_request_completes(make_setup) -> None:
    reqs = [Request(i, 0.0, 500, 600) for i in range(4)]  # 4 x 1100 tokens of KV at the end
    outcomes, preemptions = drained(make_setup(reqs, kv_tokens=3000))
    assert preemptions > 0
    assert sum(o.preemptions for o in outcomes) == preemptions
    assert sorted(o.req.id for o in outcomes) == [0, 1, 2, 3]
    assert all(o.status == "ok" and o.output_tokens == 600 for o in outcomes)
    roomy, none = drained(make_setup(reqs))
    assert none == 0
    # Recompute costs time: the paused requests end later than with room for all.
    assert max(o.end_s for o in outcomes) > max(o.end_s for o in roomy)
    result = simulate(make_setup(reqs, kv_tokens=3000))
    assert result.fleet.replicas[0].generated_tokens == 4 * 600  # no token counted twice


def test_partial_prompts_that_hold_each_others_kv_do_not_stall_the_replica(make_setup) -> None:
    """Regression: pausing a flex decoder freed KV after the prompt in flight was skipped;
    the replica then stopped with nothing running and these requests never ended."""
    reqs = [Request(0, 0.0, 300, 400, "flex"), Request(1, 0.3, 900, 10), Request(2, 0.3, 584, 400)]
    setup = make_setup(
        reqs, kv_tokens=1000, limits=EngineLimits(max_batched_tokens=512), policy="value"
    )
    outcomes, _ = drained(setup)
    assert sorted((o.req.id, o.status, o.output_tokens) for o in outcomes) == [
        (0, "ok", 400),
        (1, "ok", 10),
        (2, "ok", 400),
    ]


def test_an_abandoned_request_carries_its_share_of_the_steps_it_was_in(
    make_setup, make_tiers, perf
) -> None:
    # B's long prompt is prefilled beside A's decoding, 511 tokens a step (the budget less
    # A's token). After five chunks the next no longer fits the KV cache; A's growing context
    # then pauses B (the later arrival), and B, back in the queue past its patience, leaves.
    reqs = [Request(0, 0.0, 400, 2000), Request(1, 0.001, 2700, 10, "flex")]
    limits = EngineLimits(max_batched_tokens=512)
    setup = make_setup(reqs, kv_tokens=3000, limits=limits, tiers=make_tiers(flex=0.1))
    result = simulate(setup)
    a, b = sorted(result.fleet.outcomes, key=lambda o: o.req.id)
    assert (a.status, b.status, b.output_tokens, b.preemptions) == ("ok", "abandoned", 0, 1)
    # It earns nothing, but half of each step it was in is its cost.
    steps = [prefill_s(perf, 511, 511 * j, False, (400 + 1 + j,)) for j in range(5)]
    assert b.share_s == pytest.approx(sum(steps) / 2, rel=1e-12)
    assert a.share_s + b.share_s == pytest.approx(result.fleet.replicas[0].busy_s, rel=1e-12)


def test_value_does_not_pause_decoders_for_a_prompt_only_the_token_budget_blocks(
    make_setup,
) -> None:
    """Regression: without chunking, pausing decoders never makes a prompt fit the budget;
    it used to pause every flex decoder and stop the replica for good."""
    reqs = [Request(i, 0.0, 20, 300, "flex") for i in range(20)]
    reqs.append(Request(100, 0.5, 500, 10, "realtime"))
    limits = EngineLimits(max_batched_tokens=512, chunked_prefill=False)
    outcomes, preemptions = drained(make_setup(reqs, limits=limits, policy="value"))
    assert len(outcomes) == 21 and all(o.status == "ok" for o in outcomes)
    assert preemptions == 0


def chat(turns: int, session_tier: str = "standard", user: int = 100) -> ChatSessions:
    """One chat session: 200 system tokens, `user` new tokens a turn, 50-token answers."""
    rng = np.random.default_rng(0)
    mix = TierMix(((session_tier, 1.0),))
    return ChatSessions(
        1, None, Fixed(turns), Fixed(1), 200, Fixed(user), Fixed(50), mix, rng, Ids()
    )


def test_a_cached_chat_turn_prefills_only_its_new_tokens(make_setup, perf) -> None:
    got = by_id(make_setup(chat(2)))
    first, second = got[0], got[1]
    assert first.cached_tokens == 0
    history = 300 + 50  # turn 1's prompt and answer
    assert second.req.prefix_tokens == history and second.req.input_tokens == history + 100
    assert second.cached_tokens == history
    ttft = second.first_token_s - second.req.arrival_s
    assert ttft == pytest.approx(prefill_s(perf, 100, done=history), rel=1e-12)
    # The same turn without a session has nothing cached and prefills everything.
    plain = Request(1, second.req.arrival_s, second.req.input_tokens, 50)
    o = by_id(make_setup([plain]))[1]
    assert o.cached_tokens == 0
    assert o.first_token_s - o.req.arrival_s == pytest.approx(prefill_s(perf, 450), rel=1e-12)
    assert o.first_token_s - o.req.arrival_s > ttft


def test_a_turn_whose_cache_hit_cannot_start_gives_the_kv_back(make_setup, make_tiers) -> None:
    """Regression: a turn admitted with a cache hit but no room for its first chunk kept the
    hit's KV while it waited; abandoned there, that KV was lost to the replica for good."""
    ids = Ids()
    long_one = Request(ids.request(), 0.0, 1300, 400)
    session = ChatSessions(
        1,
        None,
        Fixed(2),
        Fixed(0),
        50,
        Fixed(600),  # turn 2: 700 cached + 600 new tokens, chunks of 511 beside the decoder
        Fixed(50),
        TierMix((("realtime", 1.0),)),
        np.random.default_rng(0),
        ids,
    )
    limits = EngineLimits(max_batched_tokens=512)
    setup = make_setup(
        Composite([OpenLoop([long_one]), session]),
        kv_tokens=2500,
        limits=limits,
        tiers=make_tiers(realtime=0.5),
    )
    outcomes, _ = drained(setup)
    status = {o.req.id: o.status for o in outcomes}
    assert status[long_one.id] == "ok"
    assert sorted(status.values()) == ["abandoned", "ok", "ok"]


def poisson_setup(make_setup, seed: int, policy: str = "fcfs") -> Setup:
    rng = np.random.default_rng(seed)
    mix = TierMix((("realtime", 0.3), ("standard", 0.4), ("flex", 0.3)))
    work = poisson(40.0, 150, Fixed(600), Fixed(120), mix, rng, Ids())
    return make_setup(work, kv_tokens=20_000, policy=policy, replicas=2)


def ends(outcomes: list[Outcome]) -> list[tuple[int, float, float]]:
    """Each request's end and its share of the steps: what a rerun must repeat exactly."""
    return [(o.req.id, o.end_s, o.share_s) for o in outcomes]


def test_the_same_seed_gives_the_same_outcomes(make_setup) -> None:
    a = simulate(poisson_setup(make_setup, 3, "value")).fleet.outcomes
    b = simulate(poisson_setup(make_setup, 3, "value")).fleet.outcomes
    c = simulate(poisson_setup(make_setup, 4, "value")).fleet.outcomes
    assert len(a) == 150
    assert ends(a) == ends(b)
    assert ends(a) != ends(c)


def test_two_simulations_interleaved_in_one_process_share_nothing(make_setup) -> None:
    alone_a = ends(simulate(poisson_setup(make_setup, 1)).fleet.outcomes)
    alone_b = ends(simulate(poisson_setup(make_setup, 2, "value")).fleet.outcomes)
    env_a, fleet_a = start(poisson_setup(make_setup, 1))
    env_b, fleet_b = start(poisson_setup(make_setup, 2, "value"))
    going = [True, True]
    while any(going):
        going = [env_a.step() if going[0] else False, env_b.step() if going[1] else False]
    assert ends(fleet_a.outcomes) == alone_a
    assert ends(fleet_b.outcomes) == alone_b


@pytest.mark.parametrize("seed", range(40))
def test_every_request_ends_once_with_its_full_output(make_setup, seed: int) -> None:
    """Random small, tight setups: nothing is lost, nothing is counted twice, KV drains."""
    rnd = random.Random(seed)
    kv = rnd.choice([800, 1500, 3000])
    limits = EngineLimits(
        max_num_seqs=rnd.choice([1, 2, 4, 16]),
        max_batched_tokens=rnd.choice([256, 512, 2048]),
        chunked_prefill=rnd.random() < 0.7,
    )
    ids, reqs = Ids(), []
    for _ in range(rnd.randint(2, 10)):
        out = rnd.randint(1, 300)
        room = kv - out - 16  # a request must fit the KV cache alone, and without chunking
        if not limits.chunked_prefill:  # the budget too, even after a preemption
            room = min(room, limits.max_batched_tokens - out - 1)
        tier = rnd.choice(["realtime", "standard", "flex", "batch"])
        prompt = max(1, min(rnd.randint(1, 2000), room))
        reqs.append(Request(ids.request(), rnd.choice([0.0, rnd.random()]), prompt, out, tier))
    session = ChatSessions(
        2, None, Fixed(2), Fixed(0), 20, Fixed(30), Fixed(40), TierMix(), rnd_np(seed), ids
    )
    setup = make_setup(
        Composite([OpenLoop(reqs), session]),
        kv_tokens=kv,
        limits=limits,
        policy=rnd.choice(["fcfs", "priority", "value"]),
        replicas=rnd.choice([1, 2]),
        router=rnd.choice(["round_robin", "least_load", "prefix_affinity"]),
    )
    outcomes, _ = drained(setup)
    assert len(outcomes) == len(reqs) + 4
    assert len({o.req.id for o in outcomes}) == len(outcomes)
    bad = [
        (o.status, o.req.input_tokens, o.req.output_tokens, o.output_tokens)
        for o in outcomes
        if o.status != "ok" or o.output_tokens != o.req.output_tokens
    ]
    assert not bad, (bad, kv, limits)


def rnd_np(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def test_a_request_that_can_never_fit_is_refused_and_the_queue_moves_on(make_setup) -> None:
    # 3,000 tokens of KV: a 2,500 + 1,000 token request can never be held, like a prompt
    # over an engine's max_model_len; the small one behind it must still be served.
    reqs = [Request(0, 0.0, 2500, 1000), Request(1, 0.0, 100, 50)]
    outcomes, _ = drained(make_setup(reqs, kv_tokens=3000))
    status = {o.req.id: (o.status, o.output_tokens) for o in outcomes}
    assert status == {0: ("refused", 0), 1: ("ok", 50)}


def test_a_prompt_over_the_budget_without_chunking_is_refused(make_setup) -> None:
    limits = EngineLimits(max_num_seqs=4, max_batched_tokens=512, chunked_prefill=False)
    reqs = [Request(0, 0.0, 600, 10), Request(1, 0.0, 500, 10)]
    outcomes, _ = drained(make_setup(reqs, limits=limits))
    assert {o.req.id: o.status for o in outcomes} == {0: "refused", 1: "ok"}
