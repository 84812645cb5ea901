"""A lean HTTP/1.1 client for the request path: keep-alive connections to one engine.

Every generation the gateway sends is one POST whose answer streams back, and httpx
cost more per request than the gateway's own logic. This client does only that, on
asyncio protocols, with httptools parsing the responses:

- one pool of keep-alive connections per engine base URL, with no cap on how many are
  open (a cap would queue requests here, out of the scheduler's sight); a few idle ones
  are kept for the next requests;
- bodies framed by Content-Length, by chunked encoding, or by the connection's end;
- a response not read to its end closes its connection: that is how a stream is aborted
  at the engine, and no later request can read its leftovers;
- a connect timeout, and a read timeout for a response that stops arriving.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import cast
from urllib.parse import urlsplit

import httptools

IDLE_KEPT = 64  # idle connections a pool keeps; more are closed when they come back
HIGH_WATER = 1 << 16  # bytes received but not yet read before the socket is left unread
_NO_BODY = (204, 304)


class HttpError(Exception):
    """The exchange failed below HTTP's statuses: no connection, a dropped one, garbage."""


class HttpTimeout(HttpError):
    """Connecting, or waiting for more of a response, took longer than allowed."""


class Dropped(HttpError):
    """The server closed the connection before the response was complete."""


class _Connection(asyncio.Protocol):
    """One keep-alive connection: sends a request, parses its response as it arrives."""

    def __init__(self, loop: asyncio.AbstractEventLoop, read_timeout: float) -> None:
        self._loop = loop
        self._read_timeout = read_timeout
        self._parser = httptools.HttpResponseParser(self)
        self._transport: asyncio.Transport | None = None
        self.reused = False  # whether it served a request before the current one
        self.closed = False
        self._waiter: asyncio.Future[None] | None = None
        self._idle_since = 0.0  # when the reader last got bytes or began to wait
        self._timer: asyncio.TimerHandle | None = None
        self._reset()

    def _reset(self) -> None:
        """Forget the last response, for the next request."""
        self.status = 0
        self.reason = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.head_done = self.complete = self.got_bytes = False
        self.keep_alive = True
        self._ends_with_close = False  # no length given: the body ends with the connection
        self._body: list[bytes] = []
        self._buffered = 0
        self._paused = False
        self._error: HttpError | None = None

    def send(self, data: bytes) -> None:
        """Write a whole request; its response starts arriving afterwards."""
        assert self._transport is not None
        self._reset()
        if self.closed:  # the server closed it since: the wait for the head says so
            self._error = Dropped("RemoteProtocolError: the server closed the connection")
            return
        self._transport.write(data)

    async def head(self) -> None:
        """Wait until the response's status line and headers have arrived."""
        while not self.head_done:
            await self._wait()

    async def receive(self) -> bytes:
        """The body bytes that arrived since the last call (waiting for some); b"" at its end."""
        while not self._body:
            if self.complete:
                return b""
            await self._wait()
        data = self._body[0] if len(self._body) == 1 else b"".join(self._body)
        self._body.clear()
        self._buffered = 0
        if self._paused and self._transport is not None:
            self._paused = False
            self._transport.resume_reading()
        return data

    def reusable(self) -> bool:
        """Whether another request may follow on this connection."""
        return self.complete and self.keep_alive and not self.closed and self._error is None

    def close(self) -> None:
        """Drop the connection (a response still arriving is aborted at the server)."""
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._transport is not None:
            self._transport.close()

    async def _wait(self) -> None:
        if self._error is not None:
            raise self._error
        self._idle_since = self._loop.time()
        if self._timer is None:
            # One watchdog per connection, armed when none is: it fires at most once a
            # read timeout and looks whether the reader has waited that long, so that a
            # wait costs no timer of its own.
            self._timer = self._loop.call_at(self._idle_since + self._read_timeout, self._watch)
        self._waiter = self._loop.create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None
        if self._error is not None:
            raise self._error

    def _watch(self) -> None:
        self._timer = None
        if self._waiter is None or self.closed:
            return  # nobody waits: the next wait arms it again
        due = self._idle_since + self._read_timeout
        if self._loop.time() < due:
            self._timer = self._loop.call_at(due, self._watch)
            return
        self._fail(HttpTimeout(f"ReadTimeout: nothing received for {self._read_timeout:g}s"))
        self.close()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _fail(self, error: HttpError) -> None:
        if self._error is None:
            self._error = error
        self._wake()

    # asyncio's callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A cast, not an isinstance check: uvloop's TCP transports are no asyncio.Transport.
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.got_bytes = True
        self._idle_since = self._loop.time()
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(HttpError(f"RemoteProtocolError: {exc}"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.head_done and self._ends_with_close and not self.complete:
            self.complete = True
            self.keep_alive = False
            self._wake()
        elif not self.complete:
            what = f": {exc}" if exc else ""
            self._fail(Dropped(f"RemoteProtocolError: the server closed the connection{what}"))

    # httptools' callbacks

    def on_message_begin(self) -> None:
        if self.complete:  # bytes after a complete response, none asked for: garbage
            self._error = HttpError("RemoteProtocolError: data after the response")
            self.close()

    def on_status(self, status: bytes) -> None:
        self.reason += status

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.status = self._parser.get_status_code()
        framed = self.status < 200 or self.status in _NO_BODY
        for name, value in self.headers:
            lower = name.lower()
            if lower == b"content-length" or (
                lower == b"transfer-encoding" and b"chunked" in value.lower()
            ):
                framed = True
        self._ends_with_close = not framed
        self.head_done = True
        self._wake()

    def on_body(self, body: bytes) -> None:
        self._body.append(body)
        self._buffered += len(body)
        if self._buffered > HIGH_WATER and not self._paused and self._transport is not None:
            self._paused = True  # the reader is behind: let TCP push back on the server
            self._transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        self.complete = True
        self.keep_alive = self._parser.should_keep_alive()
        self._wake()


class Response:
    """A response whose head has arrived; read its body, then close it."""

    __slots__ = ("_closed", "_conn", "_pool", "headers", "reason", "status")

    def __init__(self, pool: Pool, conn: _Connection) -> None:
        self._pool, self._conn = pool, conn
        self._closed = False
        self.status = conn.status
        self.reason = conn.reason.decode("latin-1")
        self.headers = conn.headers

    async def receive(self) -> bytes:
        """The next body bytes as they arrive; b"" once the body has ended."""
        return await self._conn.receive()

    async def read(self) -> bytes:
        """The rest of the body."""
        parts = []
        while data := await self._conn.receive():
            parts.append(data)
        return b"".join(parts)

    def close(self) -> None:
        """Give the connection back if the body was read to its end, else drop it."""
        if not self._closed:
            self._closed = True
            self._pool.give_back(self._conn)


class Pool:
    """Keep-alive connections to one server, and the requests sent over them."""

    def __init__(
        self,
        base_url: str,
        headers: dict[str, str],
        connect_timeout: float,
        read_timeout: float,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {base_url!r}")
        secure = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port or (443 if secure else 80)
        self._ssl = ssl.create_default_context() if secure else None
        self._prefix = parts.path.rstrip("/")
        self._where = f"{self._host}:{self._port}"
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        fixed = {"host": parts.netloc.rpartition("@")[2], **headers}
        self._fixed = "".join(f"{k}: {v}\r\n" for k, v in fixed.items()).encode("latin-1")
        self._idle: list[_Connection] = []
        self._busy: set[_Connection] = set()  # serving a request: closed with the pool too
        self._closed = False

    async def request(self, method: str, path: str, body: bytes, content_type: str) -> Response:
        """Send a request; the response once its head has arrived."""
        head = (
            f"{method} {self._prefix}{path} HTTP/1.1\r\ncontent-type: {content_type}\r\n"
            f"content-length: {len(body)}\r\n"
        ).encode("latin-1")
        data = head + self._fixed + b"\r\n" + body
        while True:
            if self._closed:
                raise HttpError(f"ConnectError: {self._where}: the client is closed")
            conn = self._idle.pop() if self._idle else None
            if conn is None:
                conn = await self._connect()
            elif conn.closed:
                continue  # the server closed it while it was idle
            self._busy.add(conn)
            conn.send(data)
            try:
                await conn.head()
            except Dropped:
                self._drop(conn)
                if conn.reused and not conn.got_bytes:
                    continue  # closed by the server as the request went out: it never ran
                raise
            except BaseException:  # an error, a timeout, or the caller gave up waiting
                self._drop(conn)
                raise
            return Response(self, conn)

    def give_back(self, conn: _Connection) -> None:
        """Keep a connection whose response was read to the end; drop any other (and
        every one once the pool is closed: nothing would ever close it)."""
        self._busy.discard(conn)
        if not self._closed and conn.reusable() and len(self._idle) < IDLE_KEPT:
            conn.reused = True
            self._idle.append(conn)
        else:
            conn.close()

    def close(self) -> None:
        """Close every connection, idle or serving a request (whose reader then fails)."""
        self._closed = True
        for conn in [*self._idle, *self._busy]:
            conn.close()
        self._idle.clear()
        self._busy.clear()

    def _drop(self, conn: _Connection) -> None:
        self._busy.discard(conn)
        conn.close()

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self._connect_timeout):
                _, conn = await loop.create_connection(
                    lambda: _Connection(loop, self._read_timeout),
                    self._host,
                    self._port,
                    ssl=self._ssl,
                )
        except TimeoutError:  # before OSError: it is one
            message = f"ConnectTimeout: no connection to {self._where} within "
            raise HttpTimeout(f"{message}{self._connect_timeout:g}s") from None
        except OSError as exc:
            raise HttpError(f"ConnectError: {self._where}: {exc}") from exc
        return conn
