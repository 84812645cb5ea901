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
import time
from pathlib import Path

from common import machine
from rich.console import Console
from rich.table import Table

from tokenfactory.catalog import load_catalog
from tokenfactory.config import load_scenario_text
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
[[workload.mix]]
tier = "realtime"
share = 0.15
[[workload.mix]]
tier = "standard"
share = 0.35
[[workload.mix]]
tier = "flex"
share = 0.3
[[workload.mix]]
tier = "batch"
share = 0.2
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
WINDOW_S = 300.0
AGENT_SHARE = 0.2  # share of the offered output tokens that comes from agents


def scenario(arrival: str, requests: int, qps: float, agents: str) -> str:
    """The scenario text with its load filled in."""
    return SCENARIO.format(arrival=arrival, requests=requests, qps=qps, agents=agents)


def main() -> None:
    """Measure capacity, overload it, and compare the policies."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--overload", type=float, default=1.5)
    args = parser.parse_args()
    cat = load_catalog()
    here = Path(__file__).parent

    def run(text: str, policy: str) -> dict:
        setup, _ = build(
            load_scenario_text(text, "overload.toml", cat, base_dir=here), cat, policy=policy
        )
        return simulate(setup).summary

    saturated = run(scenario("offline", 4000, 1.0, ""), "fcfs")
    capacity_rps = saturated["requests_completed"] / saturated["duration_s"]
    capacity_tps = saturated["output_tokens_per_s"]
    qps = args.overload * capacity_rps * (1 - AGENT_SHARE)
    # An agent step emits ~60 or ~600 tokens; 20% of the load comes from agent steps.
    agent_tps = args.overload * capacity_tps * AGENT_SHARE
    steps_per_agent, tokens_per_step = 12, 0.7 * 60 + 0.3 * 600
    agent_rate = agent_tps / (steps_per_agent * tokens_per_step)
    agents = AGENTS.format(count=int(agent_rate * WINDOW_S), rate=round(agent_rate, 3))
    text = scenario("poisson", int(qps * WINDOW_S), round(qps, 3), agents)

    console = Console(width=140)
    console.print(f"machine: {machine()}")
    console.print(
        f"capacity: {capacity_rps:.1f} requests/s, {capacity_tps:,.0f} output tok/s; offered "
        f"{args.overload:.1f}x for {WINDOW_S:.0f} s ({qps:.1f} requests/s + agents)"
    )
    table = Table(
        "policy",
        "revenue $",
        "cost $",
        "profit $",
        "realtime SLO",
        "standard SLO",
        "flex SLO",
        "batch SLO",
        "refused",
        "abandoned",
        "preempted",
        "wall s",
        title="Policies on the same overloaded demand",
    )
    for policy in ("fcfs", "priority", "value"):
        start = time.perf_counter()
        s = run(text, policy)
        wall = time.perf_counter() - start
        tiers = s["per_tier"]
        slo = [
            f"{tiers[t]['slo_attainment']:.1%}" if t in tiers else "-"
            for t in ("realtime", "standard", "flex", "batch")
        ]
        refused = sum(t["refused"] for t in tiers.values())
        abandoned = sum(t["abandoned"] for t in tiers.values())
        table.add_row(
            policy,
            f"{s['revenue_usd']:.2f}",
            f"{s['cost_usd']:.2f}",
            f"{s['profit_usd']:.2f}",
            *slo,
            str(refused),
            str(abandoned),
            str(s["preemptions"]),
            f"{wall:.1f}",
        )
    console.print(table)


if __name__ == "__main__":
    main()
