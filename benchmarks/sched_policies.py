"""The three policies on the same overloaded mixed demand: who earns the most?

Llama 3.1 8B on 4 H100s (4 vLLM replicas). First the fleet's capacity for the request
mix is measured (everything offered at once); then five minutes of Poisson demand of
realtime, standard, flex and batch requests plus agent loops arrive at about 1.5x that
capacity, and each policy serves the same requests. Reports revenue, cost, profit and
per-tier SLO attainment.

Run: `make bench-sched` (or `python benchmarks/sched_policies.py [--overload 1.5]`).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

from common import machine
from rich.console import Console
from rich.table import Table

from tokenfactory.catalog import load_catalog
from tokenfactory.config import load_scenario_text
from tokenfactory.sched import ROUTERS
from tokenfactory.sim.build import build
from tokenfactory.sim.run import simulate

SCENARIO = """
[hardware]
gpu = "H100-SXM"
gpus = 4
[model]
name = "llama-3.1-8b"
precision = "fp8"
[engine]
kind = "vllm"
[workload]
arrival = "{arrival}"
requests = {requests}
qps = {qps}
input_tokens = {{ dist = "lognormal", mean = 1200, max = 8000 }}
output_tokens = {{ dist = "lognormal", mean = 400, max = 2000 }}
seed = 7
{mix}
{agents}
"""
AGENTS = """
[workload.agents]
count = {count}
rate = {rate}
steps = 12
system_tokens = 1500
task_tokens = 300
tool_output_tokens = {{ dist = "lognormal", mean = 300, max = 3000 }}
call_output_tokens = 60
reasoning_output_tokens = {{ dist = "lognormal", mean = 600, max = 3000 }}
reasoning_share = 0.3
tier = "standard"
"""
# Shares of the plain requests per tier. "default": the paying tiers (with the agents) ask
# about 0.9x capacity and flex/batch the rest; "paying": the paying tiers alone ask more
# than the fleet can serve, so the policy must choose which paying work to serve.
MIXES = {
    "default": {"realtime": 0.15, "standard": 0.35, "flex": 0.3, "batch": 0.2},
    "paying": {"realtime": 0.25, "standard": 0.45, "flex": 0.2, "batch": 0.1},
}
WINDOW_S = 300.0
AGENT_SHARE = 0.2  # share of the offered output tokens that comes from agents


def scenario(arrival: str, requests: int, qps: float, agents: str, mix: str = "default") -> str:
    """The scenario text with its load filled in."""
    shares = "".join(
        f'[[workload.mix]]\ntier = "{tier}"\nshare = {share}\n'
        for tier, share in MIXES[mix].items()
    )
    return SCENARIO.format(arrival=arrival, requests=requests, qps=qps, agents=agents, mix=shares)


POLICIES = ("fcfs", "priority", "value")
TIERS = ("realtime", "standard", "flex", "batch")


def spread(values: list[float], fmt: str) -> str:
    """Median, and the range over seeds when they differ."""
    median = format(statistics.median(values), fmt)
    low, high = format(min(values), fmt), format(max(values), fmt)
    return median if low == high else f"{median} [{low}..{high}]"


def total(summary: dict[str, Any], field: str) -> float:
    """A per-tier count summed over the tiers."""
    return float(sum(t[field] for t in summary["per_tier"].values()))


def main() -> None:
    """Measure capacity, overload it, and compare the policies over several seeds."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--overload", type=float, default=1.5)
    parser.add_argument("--seeds", default="1,2,3,4,5")
    parser.add_argument("--router", default="least_load", choices=ROUTERS)
    parser.add_argument("--mix", default="default", choices=sorted(MIXES))
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    cat = load_catalog()
    here = Path(__file__).parent

    def run(text: str, policy: str, seed: int | None = None) -> dict[str, Any]:
        setup, _ = build(
            load_scenario_text(text, "overload.toml", cat, base_dir=here),
            cat,
            policy=policy,
            seed=seed,
        )
        return simulate(setup).summary

    saturated = run(scenario("offline", 4000, 1.0, "", args.mix), "fcfs")
    capacity_rps = saturated["requests_completed"] / saturated["duration_s"]
    capacity_tps = saturated["output_tokens_per_s"]
    qps = args.overload * capacity_rps * (1 - AGENT_SHARE)
    # An agent step emits ~60 or ~600 tokens; 20% of the load comes from agent steps.
    agent_tps = args.overload * capacity_tps * AGENT_SHARE
    steps_per_agent, tokens_per_step = 12, 0.7 * 60 + 0.3 * 600
    agent_rate = agent_tps / (steps_per_agent * tokens_per_step)
    agents = AGENTS.format(count=int(agent_rate * WINDOW_S), rate=round(agent_rate, 3))
    text = scenario("poisson", int(qps * WINDOW_S), round(qps, 3), agents, args.mix)
    text += f'\n[scheduler]\nrouter = "{args.router}"\n'

    console = Console(width=200)
    console.print(f"machine: {machine()}")
    console.print(
        f"capacity: {capacity_rps:.1f} requests/s, {capacity_tps:,.0f} output tok/s; offered "
        f"{args.overload:.1f}x for {WINDOW_S:.0f} s ({qps:.1f} requests/s + agents); "
        f"seeds {args.seeds}; router {args.router}; mix {args.mix} {MIXES[args.mix]}"
    )
    runs: dict[str, list[dict[str, Any]]] = {p: [] for p in POLICIES}
    walls: dict[str, list[float]] = {p: [] for p in POLICIES}
    for seed in seeds:
        for policy in POLICIES:
            start = time.perf_counter()
            runs[policy].append(run(text, policy, seed))
            walls[policy].append(time.perf_counter() - start)

    table = Table(
        "policy",
        "revenue $",
        "cost $",
        "profit $",
        *(f"{t} SLO" for t in TIERS),
        "refused",
        "abandoned",
        "preempted",
        "wall s",
        title=f"Policies on the same overloaded demand: median \\[range] over {len(seeds)} seeds",
    )
    for policy in POLICIES:
        got = runs[policy]

        def tier(name: str, field: str, got: list[dict[str, Any]] = got) -> list[float]:
            return [float(s["per_tier"][name][field]) for s in got if name in s["per_tier"]]

        table.add_row(
            policy,
            spread([s["revenue_usd"] for s in got], ".2f"),
            spread([s["cost_usd"] for s in got], ".3f"),
            spread([s["profit_usd"] for s in got], ".3f"),
            *(spread([100 * a for a in tier(t, "slo_attainment")], ".1f") for t in TIERS),
            spread([total(s, "refused") for s in got], ".0f"),
            spread([total(s, "abandoned") for s in got], ".0f"),
            spread([s["preemptions"] for s in got], ".0f"),
            f"{statistics.median(walls[policy]):.1f}",
        )
    console.print(table)

    money = Table(
        "policy",
        *(f"{t} revenue $" for t in TIERS),
        "duration s",
        title="Where the money comes from: median \\[range] over seeds",
    )
    for policy in POLICIES:
        got = runs[policy]
        money.add_row(
            policy,
            *(spread([s["per_tier"][t]["revenue_usd"] for s in got], ".3f") for t in TIERS),
            spread([s["duration_s"] for s in got], ".0f"),
        )
    console.print(money)

    by_seed = Table(
        "seed",
        *(f"{p} profit $" for p in POLICIES),
        "value - priority $",
        "value - fcfs $",
        *(f"{p} realtime SLO" for p in POLICIES),
        title="Profit and realtime attainment per seed",
    )
    for i, seed in enumerate(seeds):
        profit = {p: runs[p][i]["profit_usd"] for p in POLICIES}
        realtime = {p: runs[p][i]["per_tier"]["realtime"]["slo_attainment"] for p in POLICIES}
        by_seed.add_row(
            str(seed),
            *(f"{profit[p]:.3f}" for p in POLICIES),
            f"{profit['value'] - profit['priority']:+.4f}",
            f"{profit['value'] - profit['fcfs']:+.3f}",
            *(f"{realtime[p]:.1%}" for p in POLICIES),
        )
    console.print(by_seed)


if __name__ == "__main__":
    main()
