"""A server-sent-events response that notices a client leaving at once.

Starlette's StreamingResponse learns of a disconnect only when a write fails, and leaves
closing the body to the garbage collector. A request whose client left must stop at the
engine and be metered now, so this response watches for `http.disconnect` while it
streams, cancels the stream when it comes, and always closes the body.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

import anyio
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

# What Response.init_headers makes of the media type and the one header, worked out once.
_HEADERS = ((b"cache-control", b"no-cache"), (b"content-type", b"text/event-stream; charset=utf-8"))


class EventStream(Response):
    """`text/event-stream` from an async generator of ready-made event bytes."""

    media_type = "text/event-stream"

    def __init__(self, body: AsyncGenerator[bytes, None]) -> None:
        # Not Response.__init__: with no body it would announce a content-length of 0.
        self.body_iterator = body
        self.status_code = 200
        self.background = None
        self.raw_headers = list(_HEADERS)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Send the events; stop the moment the client disconnects."""
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )
        streaming = anyio.CancelScope()

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            streaming.cancel()

        # A plain task, not a task group's: ending the watcher costs a task.cancel(), where
        # cancelling a task group's scope formats the task's repr. It only ever waits on
        # `receive`, so cancelling it natively cannot cut into anything of ours.
        watcher = asyncio.get_running_loop().create_task(watch())
        try:
            with streaming:
                async for event in self.body_iterator:
                    await send({"type": "http.response.body", "body": event, "more_body": True})
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        except OSError:
            pass  # the client went away between two events
        finally:
            watcher.cancel()
            with anyio.CancelScope(shield=True):
                await self.body_iterator.aclose()
