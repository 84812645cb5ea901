"""Pacing under `value`: steps kept inside what paying requests' TPOT objectives allow."""

from __future__ import annotations

import math

from tokenfactory.sched import TierRule
from tokenfactory.sim.fleet import Outcome, TierPrice
from tokenfactory.sim.report import Economics
from tokenfactory.sim.run import simulate
from tokenfactory.workload import Request


def tpot(o: Outcome) -> float:
    assert o.first_token_s is not None
    return (o.end_s - o.first_token_s) / (o.output_tokens - 1)


def long_prompts_and_one_realtime(
    make_setup, make_tiers, policy: str, tpot_s: float, tier: str = "realtime"
):
    """Twenty flex requests of 8000 prompt tokens, each a step of its own unless held back,
    and a realtime (or standard) request decoding 50 tokens among them."""
    rank, price_ratio = (0, 2.0) if tier == "realtime" else (1, 1.0)
    paying = TierRule(tier, rank, price_ratio, None, tpot_s, math.inf, False)
    tiers = {**make_tiers(), tier: paying}
    reqs = [Request(i, 0.0, 8000, 10, "flex") for i in range(20)]
    reqs.append(Request(100, 0.0, 200, 50, tier))
    result = simulate(make_setup(reqs, tiers=tiers, policy=policy))
    outcomes = {o.req.id: o for o in result.fleet.outcomes}
    assert len(outcomes) == 21 and all(o.status == "ok" for o in outcomes.values())
    flex_end = max(o.end_s for o in outcomes.values() if o.req.tier == "flex")
    return outcomes[100], flex_end


def test_value_holds_cheap_prompts_back_so_realtime_keeps_its_tpot(make_setup, make_tiers) -> None:
    served, _ = long_prompts_and_one_realtime(make_setup, make_tiers, "priority", 0.05)
    assert tpot(served) > 0.1  # long prompt steps: every token waits for one
    served, _ = long_prompts_and_one_realtime(make_setup, make_tiers, "value", 0.05)
    assert tpot(served) <= 0.05


def test_value_does_not_hold_work_back_for_a_request_it_cannot_save(make_setup, make_tiers) -> None:
    # A 1 ms mean TPOT is below even a step of the realtime request alone: no pacing helps.
    served, value_end = long_prompts_and_one_realtime(make_setup, make_tiers, "value", 0.001)
    assert tpot(served) > 0.001
    _, priority_end = long_prompts_and_one_realtime(make_setup, make_tiers, "priority", 0.001)
    assert value_end == priority_end  # the flex work ran as fast as with no pacing


def test_value_lets_steps_run_long_while_the_realtime_request_has_slack(
    make_setup, make_tiers
) -> None:
    # A 0.2 s mean TPOT leaves room for the long prompt steps: nothing needs holding back.
    served, value_end = long_prompts_and_one_realtime(make_setup, make_tiers, "value", 0.2)
    assert tpot(served) <= 0.2
    _, priority_end = long_prompts_and_one_realtime(make_setup, make_tiers, "priority", 0.2)
    assert value_end <= 1.02 * priority_end
    # With a tight objective, the same flex work is held back for the realtime request.
    _, held_end = long_prompts_and_one_realtime(make_setup, make_tiers, "value", 0.05)
    assert held_end > 1.05 * priority_end


def test_value_does_not_pace_for_a_standard_request(make_setup, make_tiers) -> None:
    # A slow standard request is billed the same: holding the flex work back would only
    # cost throughput, so steps run as under priority even with a tight objective.
    served, value_end = long_prompts_and_one_realtime(
        make_setup, make_tiers, "value", 0.05, "standard"
    )
    assert tpot(served) > 0.05
    _, priority_end = long_prompts_and_one_realtime(
        make_setup, make_tiers, "priority", 0.05, "standard"
    )
    assert value_end == priority_end


def realtime_among_flex(
    make_setup, policy: str, ttft_s: float | None, cost_per_s: float = 0.0
) -> tuple[Outcome, float, int]:
    """Twenty flex requests of 8000 prompt tokens and 400 answer tokens, and a realtime
    request of 1000 answer tokens with a 30 ms mean TPOT, all at once; standard is priced
    1 $ per million tokens and realtime twice that."""
    realtime = TierRule("realtime", 0, 2.0, ttft_s, 0.03, math.inf, False)
    tiers = {
        name: TierRule(name, rank, 1.0, None, None, math.inf, name in ("flex", "batch"))
        for rank, name in enumerate(("realtime", "standard", "flex", "batch"))
    }
    tiers["realtime"] = realtime
    prices = {name: TierPrice(1e-6, 1e-6, 1e-6) for name in tiers}
    prices["realtime"] = TierPrice(2e-6, 2e-6, 2e-6)
    reqs = [Request(i, 0.0, 8000, 400, "flex") for i in range(20)]
    reqs.append(Request(100, 0.0, 200, 1000, "realtime"))
    economics = Economics(1, cost_per_s, 0.0, 0.0, 0.0, 1.0)
    setup = make_setup(reqs, tiers=tiers, prices=prices, economics=economics, policy=policy)
    result = simulate(setup)
    outcomes = {o.req.id: o for o in result.fleet.outcomes}
    assert len(outcomes) == 21 and all(o.status == "ok" for o in outcomes.values())
    flex_end = max(o.end_s for o in outcomes.values() if o.req.tier == "flex")
    return outcomes[100], flex_end, result.summary["preemptions"]


def test_value_pauses_cheap_decoders_only_while_the_premium_outweighs_the_pauses(
    make_setup,
) -> None:
    # The realtime request's premium is 1200 tokens at 1 $ per million: 0.0012 $.
    served, _, paused = realtime_among_flex(make_setup, "value", None, cost_per_s=1e-6)
    assert paused > 0 and tpot(served) <= 0.03
    # At 1 $ per replica second, recomputing a paused 8000-token context costs far more.
    served, _, paused = realtime_among_flex(make_setup, "value", None, cost_per_s=1.0)
    assert paused == 0 and tpot(served) <= 0.03


def test_value_neither_paces_nor_pauses_for_a_realtime_request_already_late(make_setup) -> None:
    # Its first token comes after the 0.45 s objective: it is billed as standard whatever
    # its pace, so holding the flex work back would only cost throughput.
    served, value_end, paused = realtime_among_flex(make_setup, "value", 0.45)
    assert served.first_token_s is not None and served.first_token_s > 0.45
    assert paused == 0
    _, priority_end, _ = realtime_among_flex(make_setup, "priority", 0.45)
    assert value_end == priority_end
