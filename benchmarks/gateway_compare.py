"""Speed against the gateway people use today: tokenfactory, LiteLLM and bare pass-throughs.

Five proxies stand in front of the same instant upstream (benchmarks/compare_servers.py,
an OpenAI chat server that does no model work), each pinned to core 0 while the upstream
and this load generator share core 1:

- bare: a byte-for-byte TCP relay in Python, the limit for any Python proxy;
- passthrough: a bare HTTP pass-through in Python: each request read and sent over a
  keep-alive pool, the response copied back; the limit for a proxy that routes requests;
- asgi: that pass-through as a bare ASGI app on uvicorn (uvloop, httptools), the server
  tokenfactory runs on: the limit for a gateway built on an ASGI server;
- tokenfactory: `tokenfactory serve`, one `engine = "openai"` replica at the upstream,
  the value scheduler, metering into a SQLite ledger;
- litellm: the LiteLLM proxy (1.110.2, from .venv-litellm built by scripts/litellm_env.sh)
  with the upstream as an OpenAI-compatible model with per-token prices, a master key, and
  its cost calculation on; no spend database (see docs/benchmarks.md for why).

For each, plain and streamed: latency of one request at a time (p50, p99) minus the
upstream's own (the overhead), and the highest requests/s closed-loop clients sustain,
best over a sweep of client counts. Each figure is the median over the repeats, which
visit the gateways in turn so that noise from other work on the machine spreads evenly.

Run: `make bench-compare` (or `python benchmarks/gateway_compare.py --help`).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import compare_launch as launch
from common import machine
from compare_load import Connection, latencies, request_bytes, throughput

from tokenfactory.ledger import Ledger


@dataclass
class Figures:
    """One target, one mode, one repeat: latencies in seconds, the best rate."""

    p50: float
    p99: float
    per_s: float
    clients: int
    errors: int
    cpu_ms: float


def body(stream: bool) -> dict[str, object]:
    """The chat request every target gets: 8 output tokens, usage asked for when streamed."""
    out: dict[str, object] = {
        "model": launch.MODEL,
        "messages": [{"role": "user", "content": "Hello!"}],
        "max_tokens": 8,
    }
    if stream:
        out |= {"stream": True, "stream_options": {"include_usage": True}}
    return out


def pct(values: list[float], q: int) -> float:
    """The q-th percentile."""
    return statistics.quantiles(values, n=100)[q - 1]


async def measure(target: launch.Target, stream: bool, args: argparse.Namespace) -> Figures:
    """Sequential latency, then the best closed-loop requests/s over the client sweep."""
    request = request_bytes(target.port, "/v1/chat/completions", target.key, body(stream))
    await latencies(target.port, request, stream, args.warmup)
    lat = await latencies(target.port, request, stream, args.requests)
    pid = target.proc.pid
    rates = [
        await throughput(
            target.port, request, stream, c, args.seconds, 0.5, lambda: launch.cpu_seconds(pid)
        )
        for c in args.clients
    ]
    best = max(rates, key=lambda r: r.per_s)
    errors = sum(r.errors for r in rates)
    if errors:
        first = next(r.first_error for r in rates if r.first_error)
        print(f"  {target.name}: {errors} failed requests, the first: {first}", file=sys.stderr)
    return Figures(pct(lat, 50), pct(lat, 99), best.per_s, best.clients, errors, best.cpu_ms)


async def litellm_cost(target: launch.Target) -> str:
    """LiteLLM's own account of one request's cost: proof that its cost path runs."""
    request = request_bytes(target.port, "/v1/chat/completions", target.key, body(False))
    conn = Connection(target.port, request, stream=False)
    try:
        response = await conn.call()
    finally:
        await conn.close()
    return response.headers.get("x-litellm-response-cost", "absent")


Runs = dict[bool, list[Figures]]  # streamed or not: one Figures per repeat


@dataclass(frozen=True)
class Summary:
    """Medians over repeats for one target and mode; overheads in milliseconds."""

    p50: float
    p99: float
    per_s: float
    clients: int
    errors: int
    cpu_ms: float


def summarise(runs: list[Figures], direct: list[Figures]) -> Summary:
    """Overhead is each repeat's latency minus the upstream's in that repeat, then the median."""
    pairs = list(zip(runs, direct, strict=True))
    return Summary(
        statistics.median((f.p50 - d.p50) * 1e3 for f, d in pairs),
        statistics.median((f.p99 - d.p99) * 1e3 for f, d in pairs),
        statistics.median(f.per_s for f in runs),
        statistics.mode(f.clients for f in runs),
        sum(f.errors for f in runs),
        statistics.median(f.cpu_ms for f in runs),
    )


def table(results: dict[str, Runs], direct: Runs) -> None:
    """The side-by-side table, ratios to the bare relay, and tokenfactory against the goal
    (measured against both bare proxies)."""
    modes = ((False, "plain"), (True, "streamed"))
    rows = {
        name: {s: summarise(runs[s], direct[s]) for s, _ in modes} for name, runs in results.items()
    }
    print(f"\n{'':22}{'overhead ms':^26}  {'requests/s':^24}  {'gateway CPU':^17}")
    print(
        f"{'gateway':13}{'mode':9}{'p50':>7}{'p99':>8}{'vs bare':>10}  "
        f"{'best':>7}{'clients':>8}{'vs bare':>9}  {'ms/req':>7}{'vs bare':>10}"
    )
    for s, label in modes:
        up_p50 = statistics.median(d.p50 for d in direct[s]) * 1e3
        up_rate = statistics.median(d.per_s for d in direct[s])
        print(f"{'upstream':13}{label:9}{f'(its own latency {up_p50:.2f})':>25}  {up_rate:7.0f}")
        bare = rows["bare"][s]
        for name, row in rows.items():
            r = row[s]
            print(
                f"{name:13}{label:9}{r.p50:7.2f}{r.p99:8.2f}{r.p50 / bare.p50:9.1f}x  "
                f"{r.per_s:7.0f}{r.clients:8}{r.per_s / bare.per_s:8.2f}x  "
                f"{r.cpu_ms:7.2f}{r.cpu_ms / bare.cpu_ms:9.1f}x"
            )
    print(
        "overhead: latency minus the upstream's; requests/s: the best client count's; "
        "gateway CPU: its CPU time per request at that count"
    )
    limits = (
        ("bare", "bare relay"),
        ("passthrough", "HTTP pass-through"),
        ("asgi", "ASGI pass-through"),
    )
    for limit, what in limits:
        for s, label in modes:
            tf, b = rows["tokenfactory"][s], rows[limit][s]
            over, per_s = tf.p50 / b.p50, tf.per_s / b.per_s
            print(
                f"goal, {label}: overhead {over:.1f}x the {what}'s (goal <= 2x: "
                f"{'met' if over <= 2 else 'not met'}), requests/s {per_s:.2f}x "
                f"(goal >= 0.5x: {'met' if per_s >= 0.5 else 'not met'})"
            )
    failed = {name: sum(row[s].errors for s, _ in modes) for name, row in rows.items()}
    if any(failed.values()):
        print(f"failed requests (not counted as served): {failed}")


def run(args: argparse.Namespace, work: Path, ledger: Ledger) -> None:
    """Start everything, measure each target in turn per repeat, print the table."""
    servers: list[launch.Target] = []
    try:
        up = launch.upstream(work)
        servers.append(up)
        servers.append(launch.bare(work, up.port))
        servers.append(launch.passthrough(work, up.port))
        servers.append(launch.asgi(work, up.port))
        servers.append(launch.tokenfactory(work, up.port, ledger))
        if not args.no_litellm:
            servers.append(launch.litellm(work, up.port, args.litellm_venv))
        print(f"machine: {machine()}")
        print(
            f"gateways pinned to core {launch.GATEWAY_CORE}; "
            f"upstream and load generator on core {launch.REST_CORE}"
        )
        print(
            f"{args.repeats} repeats, each: {args.requests} sequential requests, then "
            f"{args.seconds:g} s at each of {args.clients} clients; medians over repeats"
        )
        if not args.no_litellm:
            cost = asyncio.run(litellm_cost(servers[-1]))
            print(f"litellm's cost of one plain request (x-litellm-response-cost): ${cost}")
        direct: Runs = {False: [], True: []}
        results: dict[str, Runs] = {t.name: {False: [], True: []} for t in servers[1:]}
        for i in range(args.repeats):
            for stream in (False, True):
                direct[stream].append(asyncio.run(measure(up, stream, args)))
                for t in servers[1:]:
                    results[t.name][stream].append(asyncio.run(measure(t, stream, args)))
            print(f"  repeat {i + 1}/{args.repeats} done", file=sys.stderr)
        table(results, direct)
        pnl = ledger.pnl()
        print(
            f"tokenfactory metered {pnl['requests']['total']} requests, "
            f"{pnl['tokens']['output']} output tokens into its ledger"
        )
    finally:
        launch.stop(servers)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--requests", type=int, default=300, help="sequential, per repeat")
    parser.add_argument("--warmup", type=int, default=30, help="unmeasured requests first")
    parser.add_argument("--seconds", type=float, default=3.0, help="per throughput point")
    parser.add_argument("--clients", type=int, nargs="+", default=[4, 16, 64])
    parser.add_argument("--litellm-venv", type=Path, default=launch.HERE.parent / ".venv-litellm")
    parser.add_argument(
        "--no-litellm", action="store_true", help="tokenfactory and the bare proxies only"
    )
    parser.add_argument("--keep", action="store_true", help="keep the work folder and logs")
    args = parser.parse_args()
    if not args.no_litellm and not (args.litellm_venv / "bin" / "litellm").exists():
        sys.exit(f"error: no LiteLLM in {args.litellm_venv}; build it: bash scripts/litellm_env.sh")
    if len(os.sched_getaffinity(0)) < 2:
        sys.exit("error: needs two cores: one for the gateways, one for upstream and load")
    if args.repeats < 1 or args.requests < 2 or min(args.clients) < 1:
        sys.exit("error: --repeats, --clients at least 1 and --requests at least 2")
    os.sched_setaffinity(0, {launch.REST_CORE})
    work = Path(tempfile.mkdtemp(prefix="tf-compare-"))
    ledger = Ledger(f"sqlite:///{work / 'ledger.db'}")
    try:
        run(args, work, ledger)
    finally:
        ledger.close()
        if args.keep:
            print(f"logs in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
