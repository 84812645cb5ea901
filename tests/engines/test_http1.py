"""The request path's HTTP/1.1 client, against scripted servers on loopback sockets."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest

from tokenfactory.engines.http1 import HIGH_WATER, HttpError, HttpTimeout, Pool

pytestmark = pytest.mark.anyio


@dataclass
class Exchange:
    """One request as a scripted server sees it, and the means to answer it."""

    conn: int  # the connection's number, from 0
    n: int  # the request's number on its connection, from 0
    body: bytes
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter


Answer = Callable[[Exchange], Awaitable[None]]


@dataclass
class Server:
    """A loopback HTTP server that answers as its script says, and counts connections."""

    answer: Answer
    connections: int = 0
    bodies: list[bytes] = field(default_factory=list)
    ended: asyncio.Event = field(default_factory=asyncio.Event)  # a connection closed

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        number = self.connections
        self.connections += 1
        try:
            for n in range(1000):
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                body = await reader.readexactly(length)
                self.bodies.append(body)
                await self.answer(Exchange(number, n, body, reader, writer))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the client closed the connection
        finally:
            writer.close()
            self.ended.set()


@pytest.fixture(
    params=[
        pytest.param("asyncio", id="asyncio"),
        # The gateway serves on uvloop where it is installed: its transports differ.
        pytest.param(("asyncio", {"use_uvloop": True}), id="uvloop"),
    ]
)
def anyio_backend(request: pytest.FixtureRequest) -> object:
    return request.param


@contextlib.asynccontextmanager
async def serving(answer: Answer, read_timeout: float = 30.0) -> AsyncIterator[tuple[Server, Pool]]:
    """A scripted server, and a pool of connections to it."""
    server = Server(answer)
    listening = await asyncio.start_server(server.serve, "127.0.0.1", 0)
    port = listening.sockets[0].getsockname()[1]
    pool = Pool(f"http://127.0.0.1:{port}/v1", {"authorization": "Bearer k"}, 5.0, read_timeout)
    try:
        yield server, pool
    finally:
        pool.close()
        listening.close()


def head(status: str = "200 OK", *headers: str) -> bytes:
    return (f"HTTP/1.1 {status}\r\n" + "".join(h + "\r\n" for h in headers) + "\r\n").encode()


async def fixed(x: Exchange) -> None:
    """Echo the body back with a Content-Length."""
    x.writer.write(head("200 OK", f"content-length: {len(x.body)}") + x.body)


async def test_a_content_length_body_and_keep_alive_reuse() -> None:
    async with serving(fixed) as (server, pool):
        for text in (b"one", b"two", b""):
            response = await pool.request("POST", "/chat", text, "application/json")
            assert response.status == 200 and await response.read() == text
            response.close()
        assert server.connections == 1  # one connection served all three


async def test_the_request_carries_its_path_prefix_headers_and_body() -> None:
    seen: list[bytes] = []

    async def record(x: Exchange) -> None:
        seen.append(x.body)
        x.writer.write(head("404 Not Found", "content-length: 2") + b"no")

    async with serving(record) as (_server, pool):
        response = await pool.request("POST", "/x", "ü".encode(), "application/json")
        assert (response.status, response.reason, await response.read()) == (
            404,
            "Not Found",
            b"no",
        )
        response.close()
    assert seen == ["ü".encode()]


async def test_a_chunked_body_streams_as_it_arrives() -> None:
    go_on = asyncio.Event()

    async def chunked(x: Exchange) -> None:
        x.writer.write(head("200 OK", "transfer-encoding: chunked") + b"5\r\nfirst\r\n")
        await x.writer.drain()
        await go_on.wait()  # the rest only once the client has read the first piece
        x.writer.write(b"6\r\nsecond\r\n0\r\n\r\n")

    async with serving(chunked) as (server, pool):
        for _ in range(2):
            go_on.clear()
            response = await pool.request("POST", "/s", b"{}", "application/json")
            assert await response.receive() == b"first"
            go_on.set()
            assert await response.read() == b"second"
            assert await response.receive() == b""
            response.close()
        assert server.connections == 1


async def test_connection_close_is_not_reused() -> None:
    async def closing(x: Exchange) -> None:
        x.writer.write(head("200 OK", "content-length: 2", "connection: close") + b"ok")
        x.writer.close()

    async with serving(closing) as (server, pool):
        for _ in range(2):
            response = await pool.request("POST", "/", b"", "application/json")
            assert await response.read() == b"ok"
            response.close()
        assert server.connections == 2


async def test_a_body_ended_by_the_connection_closing_is_read_whole() -> None:
    async def unframed(x: Exchange) -> None:
        x.writer.write(head("200 OK") + b"until the end")
        x.writer.close()

    async with serving(unframed) as (server, pool):
        for _ in range(2):
            response = await pool.request("POST", "/", b"", "application/json")
            assert await response.read() == b"until the end"
            response.close()
        assert server.connections == 2


async def test_a_response_left_unread_closes_its_connection() -> None:
    async def endless(x: Exchange) -> None:
        if x.conn == 0:
            x.writer.write(head("200 OK", "transfer-encoding: chunked") + b"3\r\nabc\r\n")
            await x.reader.read()  # never ends, until the client closes
        else:
            await fixed(x)

    async with serving(endless) as (server, pool):
        response = await pool.request("POST", "/", b"", "application/json")
        assert await response.receive() == b"abc"
        response.close()  # before the end: the server sees the connection go
        await asyncio.wait_for(server.ended.wait(), 10)
        response = await pool.request("POST", "/", b"next", "application/json")
        assert await response.read() == b"next"
        response.close()
        assert server.connections == 2


async def test_a_connection_dropped_mid_body_is_an_error() -> None:
    async def dropping(x: Exchange) -> None:
        x.writer.write(head("200 OK", "content-length: 100") + b"partial")
        x.writer.close()

    async with serving(dropping) as (_server, pool):
        response = await pool.request("POST", "/", b"", "application/json")
        assert await response.receive() == b"partial"
        with pytest.raises(HttpError, match="closed the connection"):
            await response.receive()
        response.close()


async def test_a_kept_connection_the_server_closed_as_it_was_reused_is_retried_on_a_new_one() -> (
    None
):
    async def once(x: Exchange) -> None:
        if x.n == 1:  # the second request on a connection: closed unanswered (idle timeout)
            x.writer.transport.abort()
            return
        await fixed(x)

    async with serving(once) as (server, pool):
        for text in (b"a", b"b"):
            response = await pool.request("POST", "/", text, "application/json")
            assert await response.read() == text
            response.close()
        assert server.connections == 2 and server.bodies == [b"a", b"b", b"b"]


async def test_a_kept_connection_the_server_closed_while_idle_is_passed_over() -> None:
    async def answer_then_close(x: Exchange) -> None:
        await fixed(x)
        x.writer.close()  # an idle timeout, without saying so in the response

    async with serving(answer_then_close) as (server, pool):
        for text in (b"a", b"b"):
            response = await pool.request("POST", "/", text, "application/json")
            assert await response.read() == text
            response.close()
            await asyncio.wait_for(server.ended.wait(), 10)  # the client has seen it go
            server.ended.clear()
        assert server.connections == 2 and server.bodies == [b"a", b"b"]


async def test_a_new_connection_dropped_before_answering_is_an_error() -> None:
    async def rude(x: Exchange) -> None:
        x.writer.transport.abort()

    async with serving(rude) as (server, pool):
        with pytest.raises(HttpError, match="closed the connection"):
            await pool.request("POST", "/", b"", "application/json")
        assert server.connections == 1  # not retried: it never served a request


async def test_a_response_that_stops_arriving_times_out() -> None:
    async def stalls(x: Exchange) -> None:
        x.writer.write(head("200 OK", "content-length: 10") + b"12345")
        await x.writer.drain()
        await x.reader.read()  # nothing more, until the client closes

    async with serving(stalls, read_timeout=0.2) as (_server, pool):
        response = await pool.request("POST", "/", b"", "application/json")
        assert await response.receive() == b"12345"
        with pytest.raises(HttpTimeout, match="ReadTimeout"):
            await response.receive()
        response.close()


async def test_garbage_is_a_protocol_error() -> None:
    async def garbage(x: Exchange) -> None:
        x.writer.write(b"SMTP ready\r\n\r\n")

    async with serving(garbage) as (_server, pool):
        with pytest.raises(HttpError, match="RemoteProtocolError"):
            await pool.request("POST", "/", b"", "application/json")


async def test_a_body_bigger_than_the_buffer_arrives_whole_to_a_slow_reader() -> None:
    big = bytes(range(256)) * (HIGH_WATER // 64)  # four times what is buffered unread

    async def large(x: Exchange) -> None:
        x.writer.write(head("200 OK", f"content-length: {len(big)}") + big)

    async with serving(large) as (server, pool):
        for _ in range(2):
            response = await pool.request("POST", "/", b"", "application/json")
            parts = []
            while data := await response.receive():
                parts.append(data)
                await asyncio.sleep(0)  # let more arrive than the reader takes
            assert b"".join(parts) == big
            response.close()
        assert server.connections == 1


async def test_nothing_listening_is_a_connect_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    pool = Pool(f"http://127.0.0.1:{port}", {}, 5.0, 5.0)
    with pytest.raises(HttpError, match="ConnectError"):
        await pool.request("POST", "/", b"", "application/json")


def test_only_http_urls_make_a_pool() -> None:
    with pytest.raises(ValueError, match="not an http"):
        Pool("unix:///tmp/socket", {}, 1.0, 1.0)


async def test_closing_the_pool_closes_the_connections_serving_requests_too() -> None:
    """An engine stopped while a response is still being read: its connection closes at
    once (the server sees it go), the reader fails, and giving the response back after
    the pool closed keeps nothing open (a socket nobody would ever close)."""

    async def slow(x: Exchange) -> None:
        x.writer.write(head("200 OK", "content-length: 10") + b"half")

    async with serving(slow) as (server, pool):
        response = await pool.request("POST", "/s", b"{}", "application/json")
        assert await response.receive() == b"half"
        pool.close()
        await asyncio.wait_for(server.ended.wait(), 5)  # the server saw the connection close
        with pytest.raises(HttpError):
            await response.receive()
        response.close()
        assert pool._idle == [] and pool._busy == set()
        with pytest.raises(HttpError, match="closed"):
            await pool.request("POST", "/s", b"{}", "application/json")
