"""How fast the simulator runs: 100,000 chat requests on 8 replicas, wall time per request.

Run: `make bench-sim` (or `python benchmarks/sim_speed.py [--requests N] [--repeat K]`).
Reports the median of K runs on one core; the goal is <= 0.1 ms per simulated request.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from common import machine

from tokenfactory.catalog import load_catalog
from tokenfactory.perf.efficiency import efficiency_for
from tokenfactory.perf.model import Deployment
from tokenfactory.sim.replica import EngineLimits
from tokenfactory.sim.run import NO_COST, NO_PRICES, UNBOUNDED_TIERS, Setup, simulate
from tokenfactory.workload import Ids, LogNormal, TierMix, poisson


def chat_setup(requests: int, seed: int) -> Setup:
    """Llama 3.1 8B on 8 H100s (8 replicas), Poisson chat at about 70% of capacity."""
    cat = load_catalog()
    rng = np.random.default_rng(seed)
    workload = poisson(
        rate=90.0,
        n=requests,
        inputs=LogNormal(mean=800, max=8000, cv=1.0),
        outputs=LogNormal(mean=250, max=2000, cv=1.0),
        mix=TierMix((("realtime", 0.2), ("standard", 0.5), ("flex", 0.3))),
        rng=rng,
        ids=Ids(),
    )
    deployment = Deployment(cat.model("llama-3.1-8b"), cat.gpu("H100-SXM"), "fp8", 1)
    return Setup(
        deployment,
        efficiency_for("vllm"),
        EngineLimits(256, 8192),
        8,
        workload,
        UNBOUNDED_TIERS,
        NO_PRICES,
        NO_COST,
        policy="value",
    )


def main() -> None:
    """Time the runs and print the medians."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    walls, summary = [], {}
    for i in range(args.repeat):
        setup = chat_setup(args.requests, seed=i)
        start = time.perf_counter()
        summary = simulate(setup).summary
        walls.append(time.perf_counter() - start)
    wall = statistics.median(walls)
    print(f"machine: {machine()}")
    print(f"simulated {args.requests:,} requests on 8 replicas, {args.repeat} runs")
    print(
        f"simulated time {summary['duration_s']:,.0f} s, "
        f"{summary['output_tokens_per_s']:,.0f} output tok/s, "
        f"TTFT p99 {summary['ttft_ms']['p99']:,.0f} ms"
    )
    print(f"wall time median {wall:.2f} s (runs: {', '.join(f'{w:.2f}' for w in walls)})")
    print(f"wall time per simulated request: {wall / args.requests * 1e3:.4f} ms (goal 0.1 ms)")


if __name__ == "__main__":
    main()
