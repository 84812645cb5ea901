"""CPU per request of the gateway's engine client alone, in front of the instant upstream.

Streams the comparison's chat request (8 tokens, usage asked for) through
`OpenAIEngine.stream` inside the floor's token guard, as the gateway does, from this
process pinned to core 0, with the instant upstream (benchmarks/compare_servers.py) on
core 1. Prints this process's CPU time per request, one stream at a time and with many
at once: what the engine client and its timeouts add to each request, without the HTTP
server, the scheduler or the ledger around them.

Run: `python benchmarks/upstream_client.py [--requests 3000] [--clients 1 16] [--uvloop]`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import tempfile
import time
from pathlib import Path

import compare_launch as launch
from common import machine

from tokenfactory.engines.base import Delta, EngineRequest
from tokenfactory.engines.openai_http import OpenAIEngine
from tokenfactory.gateway.faults import Timeouts, guarded

REQUEST = EngineRequest(
    "bench",
    launch.MODEL,
    "chat",
    messages=[{"role": "user", "content": "Hello!"}],
    max_tokens=8,
)


async def one(engine: OpenAIEngine) -> None:
    """One request, streamed to its end through the floor's token guard."""
    pieces = 0
    async for item in guarded(engine.name, engine.stream(REQUEST), Timeouts()):
        pieces += len(item.pieces) if isinstance(item, Delta) else 0
    if pieces != REQUEST.max_tokens:
        raise RuntimeError(f"{pieces} pieces, not {REQUEST.max_tokens}")


async def measure(url: str, requests: int, clients: int) -> tuple[float, float]:
    """CPU ms per request and requests/s, `clients` streams at a time."""
    engine = OpenAIEngine("upstream", url, launch.MODEL, send_priority=True)
    for _ in range(50):  # warm-up: connections opened, code paths taken
        await one(engine)

    async def client(n: int) -> None:
        for _ in range(n):
            await one(engine)

    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(client(requests // clients) for _ in range(clients)))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    await engine.stop()
    done = requests // clients * clients
    return cpu / done * 1e3, done / wall


async def run(args: argparse.Namespace, url: str) -> None:
    for clients in args.clients:
        ms, per_s = await measure(url, args.requests, clients)
        print(f"{clients:3d} at once: {ms:.3f} ms CPU/request, {per_s:,.0f} requests/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--uvloop", action="store_true", help="run on uvloop (the gateway's)")
    args = parser.parse_args()
    print(f"machine: {machine()}")
    os.sched_setaffinity(0, {launch.GATEWAY_CORE})
    work = Path(tempfile.mkdtemp(prefix="upstream-client-"))
    upstream = launch.upstream(work)
    try:
        url = f"http://127.0.0.1:{upstream.port}"
        if args.uvloop:
            import uvloop

            uvloop.run(run(args, url))
        else:
            asyncio.run(run(args, url))
    finally:
        launch.stop([upstream])
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
