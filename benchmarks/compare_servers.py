"""The two fixed ends of the gateway comparison: an instant upstream and a bare relay.

- `upstream`: an OpenAI chat completions server that answers at once, plain JSON or SSE
  (with usage when asked, as vLLM does), over HTTP/1.1 keep-alive. It does no model work,
  so what a gateway in front of it measures is the gateway's own cost.
- `relay`: the bare pass-through, the limit any Python proxy can reach: every client
  connection gets its own upstream connection and bytes are copied both ways untouched.
- `passthrough`: the least an HTTP gateway does: it reads each request (head and body),
  sends it on an idle connection of a keep-alive pool to the upstream, and copies the
  response back, reading its framing (Content-Length) to know when the connection is free
  again. No auth, no JSON, no accounting: the limit for a proxy that routes requests,
  where `relay` only joins connections.

- `asgi`: the same pass-through as a bare ASGI application on uvicorn with uvloop and
  httptools, tokenfactory's own server: what any gateway built on an ASGI server pays
  before it does anything of its own (LiteLLM's proxy runs on uvicorn too). Each request's
  body is read through `receive`, sent over the same pool, and the response copied back
  through `send` as it arrives.

The others are plain asyncio protocols, no framework, so that none is the bottleneck.
Run: `python benchmarks/compare_servers.py upstream --port P` or
`python benchmarks/compare_servers.py relay|passthrough|asgi --port P --to UPSTREAM_PORT`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any, Protocol, cast

WORDS = ("The", " factory", " makes", " tokens", " and", " sells", " them", " by", " tier.")
MAX_TOKENS = 64  # an instant answer still has a length; longer asks are cut here


def _completion(body: dict[str, Any]) -> tuple[int, list[str], int]:
    """Prompt tokens (about one per word sent), the pieces of the answer, and its length."""
    prompt = sum(len(str(m.get("content", "")).split()) + 4 for m in body.get("messages") or ())
    n = max(1, min(int(body.get("max_tokens") or 8), MAX_TOKENS))
    return prompt, [WORDS[i % len(WORDS)] for i in range(n)], n


def _usage(prompt: int, completion: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def answer(body: dict[str, Any]) -> tuple[bytes, bytes]:
    """The response head's content type and its body for one chat request."""
    prompt, pieces, n = _completion(body)
    model = str(body.get("model", "upstream"))
    base = {"id": "chatcmpl-up", "created": int(time.time()), "model": model}
    if not body.get("stream"):
        message = {"role": "assistant", "content": "".join(pieces)}
        full = {
            **base,
            "object": "chat.completion",
            "choices": [{"index": 0, "message": message, "finish_reason": "length"}],
            "usage": _usage(prompt, n),
        }
        return b"application/json", json.dumps(full).encode()
    events = []
    for i, piece in enumerate(pieces):
        finish = "length" if i == n - 1 else None
        choice = {"index": 0, "delta": {"content": piece}, "finish_reason": finish}
        events.append({**base, "object": "chat.completion.chunk", "choices": [choice]})
    if (body.get("stream_options") or {}).get("include_usage"):
        usage = {
            **base,
            "object": "chat.completion.chunk",
            "choices": [],
            "usage": _usage(prompt, n),
        }
        events.append(usage)
    sse = "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"
    return b"text/event-stream", sse.encode()


def content_length(head: bytes) -> int:
    """The Content-Length of a message head (0 when it has none)."""
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 0


def split_message(buffer: bytes) -> tuple[bytes, bytes, bytes] | None:
    """The first whole message in `buffer` as (head, body, rest); None while incomplete.
    Every message here is framed by Content-Length (the upstream answers streams so too)."""
    end = buffer.find(b"\r\n\r\n")
    if end == -1:
        return None
    head = buffer[:end]
    stop = end + 4 + content_length(head)
    if len(buffer) < stop:
        return None
    return head, buffer[end + 4 : stop], buffer[stop:]


class Requests(asyncio.Protocol):
    """A server connection that hands each whole request it reads to `request`."""

    def __init__(self) -> None:
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while (message := split_message(self.buffer)) is not None:
            head, body, self.buffer = message
            self.request(head, body)

    def request(self, head: bytes, body: bytes) -> None:
        raise NotImplementedError


class Upstream(Requests):
    """One keep-alive connection to the instant upstream."""

    def request(self, head: bytes, body: bytes) -> None:
        """Answer one request: chat completions, a health check, or 404."""
        assert self.transport is not None
        method, path, _ = head.decode("latin-1").split(" ", 2)
        status, kind, payload = b"404 Not Found", b"application/json", b'{"error":"not found"}'
        if method == "POST" and path.endswith("/chat/completions"):
            status = b"200 OK"
            kind, payload = answer(json.loads(body or b"{}"))
        elif method == "GET" and path in ("/health", "/v1/models", "/models"):
            status, payload = b"200 OK", b'{"object":"list","data":[]}'
        self.transport.write(
            b"HTTP/1.1 " + status + b"\r\ncontent-type: " + kind
            + b"\r\ncontent-length: " + str(len(payload)).encode() + b"\r\n\r\n" + payload
        )  # fmt: skip


class Relay(asyncio.Protocol):
    """One client connection, copied byte for byte to its own upstream connection."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.client: asyncio.Transport | None = None
        self.peer: asyncio.Transport | None = None
        self.pending: list[bytes] = []  # what the client sent before the upstream connected

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.client = transport
        asyncio.get_running_loop().create_task(self.connect())

    async def connect(self) -> None:
        """Open this connection's upstream side and flush what waited for it."""
        assert self.client is not None
        loop = asyncio.get_running_loop()
        peer, _ = await loop.create_connection(
            lambda: Back(self.client), "127.0.0.1", self.upstream_port
        )
        self.peer = peer
        for data in self.pending:
            peer.write(data)
        self.pending.clear()

    def data_received(self, data: bytes) -> None:
        if self.peer is None:
            self.pending.append(data)
        else:
            self.peer.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.peer is not None:
            self.peer.close()


class Back(asyncio.Protocol):
    """The upstream side of a relayed connection: what comes back goes to the client."""

    def __init__(self, client: asyncio.Transport | None) -> None:
        self.client = client

    def data_received(self, data: bytes) -> None:
        if self.client is not None:
            self.client.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.client is not None:
            self.client.close()


class Pool:
    """Idle keep-alive connections to the upstream, shared by every client connection."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.idle: list[PoolConnection] = []

    async def send(self, request: bytes, client: Receiver) -> None:
        """Send one whole request; its response goes to `client` as it comes."""
        if self.idle:
            conn = self.idle.pop()
        else:
            loop = asyncio.get_running_loop()
            _, conn = await loop.create_connection(
                lambda: PoolConnection(self), "127.0.0.1", self.port
            )
        conn.forward(request, client)


class Receiver(Protocol):
    """Whoever a pooled connection hands a response to, piece by piece."""

    def piece(self, data: bytes) -> None: ...

    def answered(self) -> None: ...

    def lost(self) -> None: ...


class PoolConnection(asyncio.Protocol):
    """One upstream connection of the pool: busy with one response at a time."""

    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.client: Receiver | None = None
        self.buffer = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def forward(self, request: bytes, client: Receiver) -> None:
        assert self.transport is not None
        self.client = client
        self.transport.write(request)

    def data_received(self, data: bytes) -> None:
        client = self.client
        assert client is not None  # it speaks when asked
        client.piece(data)
        self.buffer += data
        if split_message(self.buffer) is not None:  # the response ended: free again
            self.buffer, self.client = b"", None
            self.pool.idle.append(self)
            client.answered()

    def connection_lost(self, exc: Exception | None) -> None:
        if self in self.pool.idle:
            self.pool.idle.remove(self)
        if self.client is not None:
            self.client.lost()


class PassThrough(Requests):
    """One client connection: its requests read one by one, each sent through the pool
    once the one before it was answered (HTTP/1.1 answers in order)."""

    def __init__(self, pool: Pool) -> None:
        super().__init__()
        self.pool = pool
        self.waiting: list[bytes] = []
        self.busy = False

    def request(self, head: bytes, body: bytes) -> None:
        self.waiting.append(head + b"\r\n\r\n" + body)
        self.next()

    def piece(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)

    def answered(self) -> None:
        self.busy = False
        self.next()

    def lost(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def next(self) -> None:
        if self.waiting and not self.busy:
            self.busy = True
            asyncio.get_running_loop().create_task(self.pool.send(self.waiting.pop(0), self))


class Exchange:
    """One request of the ASGI pass-through: the upstream's response as it comes."""

    def __init__(self) -> None:
        self.pieces: asyncio.Queue[bytes | None] = asyncio.Queue()

    def piece(self, data: bytes) -> None:
        self.pieces.put_nowait(data)

    def answered(self) -> None:
        self.pieces.put_nowait(None)

    def lost(self) -> None:
        self.pieces.put_nowait(None)


class AsgiPassThrough:
    """The pass-through as an ASGI application: no routing, auth, JSON or accounting."""

    def __init__(self, upstream_port: int) -> None:
        self.pool = Pool(upstream_port)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        body, more = b"", True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        head = (
            f"{scope['method']} {scope['path']} HTTP/1.1\r\nhost: upstream\r\n"
            f"content-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
        )
        exchange = Exchange()
        await self.pool.send(head.encode() + body, exchange)
        # The upstream's head comes with its first piece: its status and headers lead.
        started, buffer = False, b""
        while (data := await exchange.pieces.get()) is not None:
            if started:
                await send({"type": "http.response.body", "body": data, "more_body": True})
                continue
            buffer += data
            end = buffer.find(b"\r\n\r\n")
            if end == -1:
                continue
            lines = buffer[:end].split(b"\r\n")
            headers = [
                (name.strip().lower(), value.strip())
                for name, _, value in (line.partition(b":") for line in lines[1:])
            ]
            await send(
                {
                    "type": "http.response.start",
                    "status": int(lines[0].split(b" ")[1]),
                    "headers": headers,
                }
            )
            await send({"type": "http.response.body", "body": buffer[end + 4 :], "more_body": True})
            started = True
        await send({"type": "http.response.body", "body": b""})


async def serve(role: str, port: int, upstream_port: int) -> None:
    """Run the upstream, the relay or the pass-through on loopback until killed."""
    loop = asyncio.get_running_loop()
    if role == "upstream":
        server = await loop.create_server(Upstream, "127.0.0.1", port, backlog=1024)
    elif role == "relay":
        server = await loop.create_server(
            lambda: Relay(upstream_port), "127.0.0.1", port, backlog=1024
        )
    else:
        pool = Pool(upstream_port)
        server = await loop.create_server(
            lambda: PassThrough(pool), "127.0.0.1", port, backlog=1024
        )
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("role", choices=("upstream", "relay", "passthrough", "asgi"))
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument(
        "--to", type=int, default=0, help="the upstream's port (relay, passthrough)"
    )
    args = parser.parse_args()
    if args.role == "asgi":
        import uvicorn

        uvicorn.run(
            AsgiPassThrough(args.to),
            host="127.0.0.1",
            port=args.port,
            log_level="warning",
            loop="uvloop",
            http="httptools",
            lifespan="off",
        )
        return
    asyncio.run(serve(args.role, args.port, args.to))


if __name__ == "__main__":
    main()
