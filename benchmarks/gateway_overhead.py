"""What the gateway adds to a request: latency overhead and requests/s on one core.

The same requests go straight to a twin engine and through tokenfactory (value policy,
metering into a SQLite ledger) in front of that twin. The twin runs 1000x faster than a
real H100 so that its own time is small. The gateway is pinned to core 0; the twin and
this load generator share core 1.

- overhead: one request at a time, N non-streamed and N streamed requests of 8 output
  tokens; the medians and 99th percentiles of the latencies, direct and through the
  gateway, and the difference;
- throughput: 32 concurrent clients for a fixed time, completed requests per second,
  direct and through the gateway.

Run: `make bench-gateway` (or `python benchmarks/gateway_overhead.py [--requests N]`).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from common import machine

from tokenfactory.ledger import Ledger

BODY = {
    "model": "llama-3.1-8b",
    "messages": [{"role": "user", "content": "Hello!"}],
    "max_tokens": 8,
}


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(args: list[str], core: int, log: Path) -> subprocess.Popen[bytes]:
    """A server process pinned to one core."""
    return subprocess.Popen(
        ["taskset", "-c", str(core), sys.executable, "-m", "tokenfactory", *args],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )


def wait_ready(url: str, deadline_s: float = 120) -> None:
    limit = time.monotonic() + deadline_s
    while time.monotonic() < limit:
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)  # polling a server that is starting, with a deadline
    raise RuntimeError(f"{url} did not come up")


async def latencies(base: str, key: str, n: int, stream: bool) -> list[float]:
    """`n` requests one after the other; seconds each took to the last byte."""
    out = []
    async with httpx.AsyncClient(
        base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=30
    ) as c:
        for _ in range(n):
            start = time.perf_counter()
            if stream:
                async with c.stream(
                    "POST", "/chat/completions", json={**BODY, "stream": True}
                ) as r:
                    async for _ in r.aiter_bytes():
                        pass
            else:
                (await c.post("/chat/completions", json=BODY)).raise_for_status()
            out.append(time.perf_counter() - start)
    return out


async def throughput(base: str, key: str, clients: int, seconds: float, stream: bool) -> float:
    """Completed requests per second with `clients` concurrent closed-loop clients."""
    done = 0
    stop = time.perf_counter() + seconds
    body = {**BODY, "stream": stream}

    async def client(c: httpx.AsyncClient) -> None:
        nonlocal done
        while time.perf_counter() < stop:
            if stream:
                async with c.stream("POST", "/chat/completions", json=body) as r:
                    async for _ in r.aiter_bytes():
                        pass
            else:
                (await c.post("/chat/completions", json=body)).raise_for_status()
            done += 1

    limits = httpx.Limits(max_connections=clients)
    async with httpx.AsyncClient(
        base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=60, limits=limits
    ) as c:
        start = time.perf_counter()
        await asyncio.gather(*(client(c) for _ in range(clients)))
        return done / (time.perf_counter() - start)


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] if len(values) > 1 else values[0]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=32)
    args = parser.parse_args()
    os.sched_setaffinity(0, {1})
    work = Path(tempfile.mkdtemp(prefix="tf-bench-"))
    twin_port, gw_port = free_port(), free_port()
    twin = start(
        [
            "twin",
            "--gpu",
            "H100-SXM",
            "--model",
            "llama-3.1-8b",
            "--speedup",
            "1000",
            "--max-num-seqs",
            "256",
            "--port",
            str(twin_port),
        ],
        1,
        work / "twin.log",
    )
    factory = work / "factory.toml"
    factory.write_text(
        f'[server]\nadmin_key = "bench-admin"\ndatabase = "sqlite:///{work / "ledger.db"}"\n'
        f'[scheduler]\npolicy = "value"\n[[replicas]]\nname = "twin-0"\nengine = "twin"\n'
        f'url = "http://127.0.0.1:{twin_port}"\nmodel = "llama-3.1-8b"\ngpu = "H100-SXM"\n'
        f'precision = "fp8"\nmax_concurrency = 256\n'
    )
    ledger = Ledger(f"sqlite:///{work / 'ledger.db'}")
    ledger.migrate()
    _, key = ledger.create_key("bench")
    gateway = start(
        ["serve", "--config", str(factory), "--port", str(gw_port)], 0, work / "gateway.log"
    )
    try:
        direct, through = f"http://127.0.0.1:{twin_port}/v1", f"http://127.0.0.1:{gw_port}/v1"
        wait_ready(direct + "/models")
        wait_ready(f"http://127.0.0.1:{gw_port}/health")
        print(f"machine: {machine()}")
        print("gateway pinned to core 0; twin (H100, Llama 3.1 8B, 1000x) and client on core 1")
        for stream in (False, True):
            kind = "streamed" if stream else "plain"
            asyncio.run(latencies(through, key, 20, stream))  # warm up both paths
            a = asyncio.run(latencies(direct, key, args.requests, stream))
            b = asyncio.run(latencies(through, key, args.requests, stream))
            print(
                f"{kind:8} latency ms  direct p50 {pct(a, 50) * 1e3:6.2f}"
                f" p99 {pct(a, 99) * 1e3:6.2f}"
                f" | gateway p50 {pct(b, 50) * 1e3:6.2f} p99 {pct(b, 99) * 1e3:6.2f}"
                f" | overhead p50 {(pct(b, 50) - pct(a, 50)) * 1e3:5.2f}"
                f" p99 {(pct(b, 99) - pct(a, 99)) * 1e3:5.2f}"
            )
        for stream in (False, True):
            kind = "streamed" if stream else "plain"
            d = asyncio.run(throughput(direct, key, args.clients, args.seconds, stream))
            g = asyncio.run(throughput(through, key, args.clients, args.seconds, stream))
            print(
                f"{kind:8} requests/s ({args.clients} clients): direct {d:7.1f} | "
                f"gateway {g:7.1f} ({g / d:.0%} of direct)"
            )
        pnl = ledger.pnl()
        print(
            f"metered: {pnl['requests']['total']} requests, {pnl['tokens']['output']} output "
            f"tokens in the ledger"
        )
    finally:
        for p in (gateway, twin):
            p.terminate()
            p.wait(timeout=30)
        ledger.close()


if __name__ == "__main__":
    main()
