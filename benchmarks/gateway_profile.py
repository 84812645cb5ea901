"""Where tokenfactory's time per request goes under the comparison's load.

Starts the instant upstream and `tokenfactory serve` as `gateway_compare.py` does, loads
the gateway with closed-loop clients, and samples it with py-spy (from .venv-litellm,
built by scripts/litellm_env.sh) meanwhile. Prints the share of the gateway's CPU
samples by area (inclusive: a sample counts for every area on its stack) and the
functions that cost most, inclusive and on their own.

Run: `python benchmarks/gateway_profile.py [--stream] [--gil] [--seconds 15] [--top 25]`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

import compare_launch as launch
from compare_load import request_bytes, throughput
from gateway_compare import body

from tokenfactory.ledger import Ledger

# A sample is charged to the innermost frame from one of these packages: the code that
# asked for the work. Standard library frames (asyncio, threading, sockets) are plumbing
# and go to their caller; a stack of nothing else is the event loop's own time.
PACKAGES = (
    "tokenfactory",
    "sqlalchemy",
    "fastapi",
    "starlette",
    "uvicorn",
    "h11",
    "httptools",
    "uvloop",
    "httpx",
    "httpcore",
    "anyio",
    "pydantic",
    "pydantic_core",
    "prometheus_client",
)
# A thread sampled while it waits for work is idle, not a cost: py-spy cannot always tell.
IDLE = {"Condition.wait", "EpollSelector.select", "select"}
FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*?)(?::\d+)?\)$")


OURS = "tokenfactory/"


def parse(raw: str) -> list[tuple[list[tuple[str, str]], int]]:
    """py-spy's raw (collapsed) output: each stack as (function, file) frames, and its count."""
    stacks = []
    for line in raw.splitlines():
        frames, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue  # --nonblocking reads a running process: now and then a torn stack
        parsed = []
        for frame in frames.split(";"):
            m = FRAME.match(frame.strip())
            parsed.append((m["func"], m["file"]) if m else (frame, ""))
        if parsed[-1][0] not in IDLE:
            stacks.append((parsed, int(count)))
    return stacks


def area(frames: list[tuple[str, str]]) -> str:
    """Who asked for a sample's work: a package, or tokenfactory's module."""
    for _, file in reversed(frames):
        top, _, rest = file.partition("/")
        if top == "tokenfactory":
            return "tokenfactory/" + rest.removesuffix(".py")
        if top in PACKAGES:
            return top
    return "event loop, threads (stdlib only)"


def report(stacks: list[tuple[list[tuple[str, str]], int]], top: int) -> None:
    """Shares by area, then the costliest functions: tokenfactory's inclusive, all self."""
    total = sum(count for _, count in stacks)
    areas: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    for frames, count in stacks:
        names = {f"{func} ({Path(file).name})" for func, file in frames if OURS in file}
        inclusive.update(dict.fromkeys(names, count))
        func, file = frames[-1]
        own[f"{func} ({Path(file).name})"] += count
        areas[area(frames)] += count
    print(f"{total} samples of the gateway's busy time (threads waiting for work left out)")
    print("\nby who asked for the work (the innermost package or tokenfactory module):")
    for name, count in areas.most_common():
        print(f"  {count / total:6.1%}  {name}")
    for title, counts in (("tokenfactory's, inclusive", inclusive), ("all, self", own)):
        print(f"\ntop {top} functions, {title}:")
        for name, count in counts.most_common(top):
            print(f"  {count / total:6.1%}  {name}")


async def load(port: int, key: str, stream: bool, clients: int, seconds: float) -> float:
    """Closed-loop load on the gateway; its requests/s."""
    request = request_bytes(port, "/v1/chat/completions", key, body(stream))
    return (await throughput(port, request, stream, clients, seconds, warmup_s=1.0)).per_s


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--stream", action="store_true")
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument(
        "--gil", action="store_true", help="sample only the thread holding the GIL (py-spy --gil)"
    )
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--litellm-venv", type=Path, default=launch.HERE.parent / ".venv-litellm")
    args = parser.parse_args()
    py_spy = args.litellm_venv / "bin" / "py-spy"
    if not py_spy.exists():
        sys.exit(f"error: no py-spy at {py_spy}; build it: bash scripts/litellm_env.sh")
    os.sched_setaffinity(0, {launch.REST_CORE})
    work = Path(tempfile.mkdtemp(prefix="tf-profile-"))
    ledger = Ledger(f"sqlite:///{work / 'ledger.db'}")
    servers: list[launch.Target] = []
    try:
        servers.append(up := launch.upstream(work))
        servers.append(tf := launch.tokenfactory(work, up.port, ledger))
        out = work / "profile.txt"
        cmd = ["taskset", "-c", str(launch.REST_CORE), str(py_spy), "record", "--pid"]
        options = [
            "--nonblocking",
            "--format",
            "raw",
            "--rate",
            "250",
            "--duration",
            str(int(args.seconds)),
        ]
        options += ["--gil"] if args.gil else []
        spy = subprocess.Popen(
            [*cmd, str(tf.proc.pid), *options, "--output", str(out)],
            stdout=subprocess.DEVNULL,
            stderr=(work / "py-spy.log").open("wb"),
        )
        # The load runs a second past the sampling at both ends: the samples are all loaded.
        rate = asyncio.run(load(tf.port, tf.key, args.stream, args.clients, args.seconds + 1))
        if spy.wait(timeout=60) != 0:
            sys.exit(f"error: py-spy failed: {(work / 'py-spy.log').read_text()[-500:]}")
        kind = "streamed" if args.stream else "plain"
        print(f"tokenfactory, {kind}, {args.clients} clients: {rate:.0f} requests/s under py-spy")
        report(parse(out.read_text()), args.top)
    finally:
        launch.stop(servers)
        ledger.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
