"""A lean HTTP/1.1 load generator for the gateway comparison.

A general-purpose client (httpx) spends more CPU per request than the fastest target
here, so it would measure itself. This one sends a prepared request over keep-alive
connections and reads each response to its end (Content-Length or chunked framing), and
checks it: status 200, and for a stream the closing `[DONE]`. A failed answer counts as
an error, never as a request served.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


def request_bytes(port: int, path: str, key: str, body: dict[str, Any]) -> bytes:
    """One complete POST with a JSON body, ready to send as it is."""
    payload = json.dumps(body).encode()
    return (
        f"POST {path} HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\nauthorization: Bearer {key}\r\n"
        f"content-type: application/json\r\ncontent-length: {len(payload)}\r\n\r\n"
    ).encode() + payload


@dataclass
class Response:
    """What came back for one request."""

    status: int
    headers: dict[str, str]
    body: bytes


class BadResponse(Exception):
    """The target answered with an error or a malformed response."""


async def read_response(reader: asyncio.StreamReader) -> Response:
    """One HTTP/1.1 response, its body read to the end of its framing."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    if "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        parts = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")  # no trailers here: the final blank line
                break
            parts.append(await reader.readexactly(size))
            await reader.readexactly(2)
        body = b"".join(parts)
    else:
        raise BadResponse(f"no framing in {lines[0]!r}")
    return Response(status, headers, body)


class Connection:
    """One keep-alive connection that sends the same request again and again."""

    def __init__(self, port: int, request: bytes, stream: bool) -> None:
        self.port, self.request, self.stream = port, request, stream
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def call(self) -> Response:
        """Send the request, read and check its response; reconnect if the server closed."""
        if self.writer is None or self.writer.is_closing():
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        assert self.reader is not None
        self.writer.write(self.request)
        response = await read_response(self.reader)
        if response.headers.get("connection", "").lower() == "close":
            await self.close()
        if response.status != 200:
            raise BadResponse(f"HTTP {response.status}: {response.body[:300]!r}")
        if self.stream and b"data: [DONE]" not in response.body:
            raise BadResponse(f"stream without [DONE]: {response.body[-300:]!r}")
        return response

    async def close(self) -> None:
        """Close the connection if it is open."""
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(OSError):  # the server had gone already
                await self.writer.wait_closed()
            self.writer = None


async def latencies(port: int, request: bytes, stream: bool, n: int) -> list[float]:
    """`n` requests one after another on one connection: seconds each took to its end."""
    conn = Connection(port, request, stream)
    out = []
    try:
        for _ in range(n):
            start = time.perf_counter()
            await conn.call()
            out.append(time.perf_counter() - start)
    finally:
        await conn.close()
    return out


@dataclass
class Rate:
    """Closed-loop throughput at one client count."""

    clients: int
    per_s: float
    errors: int
    cpu_ms: float  # the server's CPU time per request served, or NaN if not measured
    first_error: str = field(default="")


async def throughput(
    port: int,
    request: bytes,
    stream: bool,
    clients: int,
    seconds: float,
    warmup_s: float,
    cpu_s: Callable[[], float] | None = None,
) -> Rate:
    """Requests/s that `clients` closed-loop clients complete after a warm-up.

    With `cpu_s` (the server's CPU seconds so far), also its CPU time per request."""
    done = errors = 0
    first_error = ""
    counting = False
    loop = asyncio.get_running_loop()
    stop = loop.time() + warmup_s + seconds

    async def client() -> None:
        nonlocal done, errors, first_error
        conn = Connection(port, request, stream)
        try:
            while loop.time() < stop:
                try:
                    await conn.call()
                except (BadResponse, OSError, asyncio.IncompleteReadError, ValueError) as e:
                    errors += counting
                    first_error = first_error or f"{type(e).__name__}: {e}"
                    await conn.close()
                    continue
                done += counting
        finally:
            await conn.close()

    tasks = [asyncio.create_task(client()) for _ in range(clients)]
    await asyncio.sleep(warmup_s)  # the warm-up's length is the point, not a stand-in for sync
    counting, done, errors = True, 0, 0
    start, cpu_start = loop.time(), cpu_s() if cpu_s else math.nan
    await asyncio.gather(*tasks)
    # Requests still in flight at `stop` finish after it and count: divide by the real span.
    span, cpu = loop.time() - start, (cpu_s() if cpu_s else math.nan) - cpu_start
    return Rate(clients, done / span, errors, cpu / max(done, 1) * 1e3, first_error)
