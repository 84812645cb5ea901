"""Two versions of tokenfactory side by side: CPU per request of each, in one run.

A change to the gateway's request path moves its CPU per request by a few tens of
percent, and on a shared machine one run of `gateway_compare.py` moves as much from one
run to the next. This starts the instant upstream and two `tokenfactory serve`, one from
the git revision given (checked out into a temporary worktree) and one from this tree,
and loads them in turn at one client count, alternating which goes first, so that
whatever else the machine does falls on both. Each is pinned to core 0, as in the
comparison; the figure is the gateway's CPU time per request served, median over rounds.

Run: `python benchmarks/gateway_ab.py BASE_REV [--rounds 5] [--seconds 3] [--clients 16]`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import compare_launch as launch
from common import machine
from compare_load import request_bytes, throughput
from gateway_compare import body

from tokenfactory.ledger import Ledger

REPO = launch.HERE.parent


def cpu_ms(target: launch.Target, stream: bool, clients: int, seconds: float) -> float:
    """The gateway's CPU ms per request over `seconds` of closed-loop load."""
    request = request_bytes(target.port, "/v1/chat/completions", target.key, body(stream))
    rate = asyncio.run(
        throughput(
            target.port,
            request,
            stream,
            clients,
            seconds,
            0.5,
            lambda: launch.cpu_seconds(target.proc.pid),
        )
    )
    if rate.errors:
        sys.exit(
            f"error: {target.name}: {rate.errors} failed requests, the first: {rate.first_error}"
        )
    return rate.cpu_ms


def run(args: argparse.Namespace, work: Path) -> None:
    """Start both gateways, measure them in turn, print the medians and their ratio."""
    trees = {"base": work / "base" / "src", "this": REPO / "src"}
    servers: list[launch.Target] = []
    try:
        up = launch.upstream(work)
        servers.append(up)
        gateways = {}
        for name, src in trees.items():
            (work / name).mkdir(exist_ok=True)
            # The child imports tokenfactory from `src`, ahead of the installed one.
            os.environ["PYTHONPATH"] = str(src)
            ledger = Ledger(f"sqlite:///{work / name / 'ledger.db'}")
            gateways[name] = launch.tokenfactory(work / name, up.port, ledger)
            ledger.close()
            servers.append(gateways[name])
        print(f"machine: {machine()}")
        print(
            f"base {args.base} vs this tree; {args.rounds} rounds of {args.seconds:g} s "
            f"at {args.clients} clients each, turns alternating"
        )
        results: dict[tuple[str, bool], list[float]] = {}
        for i in range(args.rounds):
            order = list(gateways.items())
            for stream in (False, True):
                for name, target in order if i % 2 == 0 else reversed(order):
                    figure = cpu_ms(target, stream, args.clients, args.seconds)
                    results.setdefault((name, stream), []).append(figure)
        for stream, label in ((False, "plain"), (True, "streamed")):
            base = statistics.median(results[("base", stream)])
            this = statistics.median(results[("this", stream)])
            print(
                f"{label:9} CPU ms per request: base {base:.2f}, this {this:.2f} "
                f"({this / base - 1:+.0%})"
            )
    finally:
        launch.stop(servers)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("base", help="the git revision to compare this tree with")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--clients", type=int, default=16)
    args = parser.parse_args()
    if len(os.sched_getaffinity(0)) < 2:
        sys.exit("error: needs two cores: one for the gateways, one for upstream and load")
    os.sched_setaffinity(0, {launch.REST_CORE})
    work = Path(tempfile.mkdtemp(prefix="tf-ab-"))
    worktree = ["git", "-C", str(REPO), "worktree"]
    try:
        subprocess.run(
            [*worktree, "add", "--detach", str(work / "base"), args.base],
            check=True,
            capture_output=True,
        )
    except subprocess.CalledProcessError as e:
        shutil.rmtree(work, ignore_errors=True)
        sys.exit(f"error: cannot check out {args.base!r}: {e.stderr.decode().strip()}")
    try:
        run(args, work)
    finally:
        subprocess.run([*worktree, "remove", "--force", str(work / "base")], check=False)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
