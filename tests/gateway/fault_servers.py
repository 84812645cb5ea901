"""Misbehaving engines for the fault tests: real servers on loopback that hang, stall,
answer 500 or garbage; and a twin in its own process, to be killed with SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from servers import no_lifespan

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

# How each misbehaviour answers a completion request. `before`: the engine fails before
# its first token (the gateway may retry elsewhere); otherwise after `tokens` tokens.
BEFORE = ("hang", "http_500", "bad_json", "wrong_sse", "no_finish")
AFTER = ("stall", "bad_json", "wrong_sse", "no_finish")


@dataclass
class FaultyEngine:
    """An OpenAI-compatible server that answers `tokens` tokens, then does `fault`."""

    fault: str
    tokens: int = 0
    requests: list[str] = field(default_factory=list)  # the paths it was asked

    @property
    def generations(self) -> int:
        """Completion requests it received."""
        return sum(1 for path in self.requests if path.endswith("completions"))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await no_lifespan(receive, send)
            return
        path = scope["path"]
        if scope["method"] == "GET":  # health, models: all is well, it says
            await _json(send, 200, {"status": "ok", "data": []})
            return
        while (await receive()).get("more_body"):
            pass  # read the whole body
        self.requests.append(path)
        if not path.endswith("completions"):
            await _json(send, 404, {"error": {"message": "no such route"}})
            return
        if self.fault == "http_500":
            await _json(send, 500, {"error": {"message": "CUDA error: an illegal memory access"}})
            return
        if self.fault == "hang":  # not even the status line
            await _until_disconnect(receive)
            return
        headers = [(b"content-type", b"text/event-stream")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        chat = path.endswith("chat/completions")
        for i in range(self.tokens):
            await _body(send, _chunk(chat, f"w{i} "))
        if self.fault == "stall":
            await _until_disconnect(receive)  # the stream stalls: no next token, ever
            return
        tail = {
            "bad_json": b'data: {"choices": [{"index": 0, "te\n\n',
            "wrong_sse": b'data: {"choices": "not a list of choices"}\n\n',
            "no_finish": b"data: [DONE]\n\n",
        }[self.fault]
        await send({"type": "http.response.body", "body": tail})


def _chunk(chat: bool, text: str) -> bytes:
    choice: dict[str, Any] = {"index": 0, "finish_reason": None}
    if chat:
        choice["delta"] = {"content": text}
    else:
        choice["text"] = text
    return b"data: " + json.dumps({"choices": [choice]}).encode() + b"\n\n"


async def _body(send: Send, data: bytes) -> None:
    await send({"type": "http.response.body", "body": data, "more_body": True})


async def _json(send: Send, status: int, body: object) -> None:
    headers = [(b"content-type", b"application/json")]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": json.dumps(body).encode()})


async def _until_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


@dataclass
class TwinProcess:
    """`tokenfactory twin` in a child process on a fixed port, to kill and start again."""

    port: int
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Its base URL."""
        return f"http://127.0.0.1:{self.port}"

    def start(self, deadline_s: float = 60.0) -> None:
        """Start it and wait until it answers /health."""
        command = [sys.executable, "-m", "tokenfactory", "twin", "--gpu", "H100-SXM"]
        # Real speed: a long answer is still streaming when the test kills it.
        command += ["--model", "llama-3.1-8b", "--precision", "fp8", "--speedup", "1"]
        command += ["--port", str(self.port)]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
        self.process = subprocess.Popen(
            command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        limit = time.monotonic() + deadline_s
        while not _answers(self.url + "/health"):
            if self.process.poll() is not None or time.monotonic() > limit:
                raise RuntimeError(f"the twin on port {self.port} did not start")
            time.sleep(0.05)  # polling a child process's port, with a deadline

    def kill(self) -> None:
        """SIGKILL: no goodbye, connections drop mid-stream."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
