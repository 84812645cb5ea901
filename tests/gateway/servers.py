"""Real servers on loopback for the gateway's tests: uvicorn in a thread, a free port."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextmanager
def serving(
    app: Any, port: int | None = None, deadline_s: float = 60.0, **options: Any
) -> Iterator[str]:
    """Run an ASGI app until the block ends; yields its base URL (`options`: uvicorn's)."""
    port = port or free_port()
    options = {"log_level": "warning", **options}
    config = uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="on", **options)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    limit = time.monotonic() + deadline_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > limit:
            raise RuntimeError(f"server on port {port} did not start")
        time.sleep(0.01)  # polling a flag set by the server thread, with a deadline
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


async def no_lifespan(receive: Any, send: Any) -> None:
    """Answer an ASGI lifespan scope for an app with nothing to start or stop."""
    await receive()  # startup
    await send({"type": "lifespan.startup.complete"})
    await receive()  # shutdown
    await send({"type": "lifespan.shutdown.complete"})
