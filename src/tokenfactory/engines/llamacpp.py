"""Embedded llama.cpp: llama-cpp-python's server as a child process, spoken to over HTTP.

It serves one request at a time and sends no usage in streams, so tokens are counted here.
Prompts: by an in-process, vocabulary-only copy of the model that renders chats with the
server's own chat handler: exact, and no tokenize call waiting behind the server's lock.
Output: one streamed chunk per token, except a character whose UTF-8 bytes span several
tokens, sent as one chunk and tokenized again (exact on SmolLM2's emoji and CJK answers).
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import functools
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import anyio

from tokenfactory.engines.base import Delta, Engine, EngineError, EngineRequest, Load, Usage
from tokenfactory.engines.openai_http import OpenAIEngine

# Starts llama-cpp-python's server (argv follows) so that it dies with the factory (Linux:
# a parent-death signal), and with llama.cpp's extra CPU buffer types (AMX, repacking) off
# unless asked: llama-cpp-python 0.3.36 built natively segfaults with them in decode on
# SmolLM2's Q4_1 weights on AMX Xeons, and the server has no option for it.
_LAUNCHER = """
import ctypes, os, runpy, signal, sys
import llama_cpp.llama_cpp as c
if sys.platform == "linux":
    ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    if os.getppid() != {parent}:
        sys.exit("the factory that started this server is gone")
defaults = c.llama_model_default_params
def params():
    p = defaults()
    p.use_extra_bufts = {extra_buffers}
    return p
c.llama_model_default_params = params
runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)
"""
_CHAT_RENDER_PARAMS = ("tools", "tool_choice", "functions", "function_call", "response_format")


class _Rendered(Exception):
    """Raised by the stand-in Llama where the real one would start generating."""

    def __init__(self, text: str, add_bos: bool, tokens: list[int]) -> None:
        self.text, self.add_bos, self.tokens = text, add_bos, tokens


class _Stand:
    """Stands in for the server's Llama inside its chat handler: renders, never generates."""

    def __init__(self, llama: Any) -> None:
        self._llama = llama
        self._last: tuple[str, bool] = ("", True)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._llama, name)

    def tokenize(self, text: bytes, add_bos: bool = True, special: bool = False) -> list[int]:
        self._last = (text.decode("utf-8"), add_bos)
        return list(self._llama.tokenize(text, add_bos, special))

    def create_completion(self, prompt: list[int], **_: Any) -> NoReturn:
        raise _Rendered(*self._last, tokens=list(prompt))


@functools.cache
def _close_devnull_at_exit() -> None:
    """llama_cpp opens two /dev/null files at import and never closes them; close them at
    exit so the interpreter does not warn about them as it shuts down."""

    def close() -> None:
        from llama_cpp import _utils

        for f in (_utils.outnull_file, _utils.errnull_file):
            f.close()

    atexit.register(close)


class Tokenizer:
    """The model's tokenizer and chat template, loaded in-process without its weights."""

    def __init__(self, model_path: Path) -> None:
        try:
            import llama_cpp
        except ImportError as exc:
            hint = "pip install 'tokenfactory[llamacpp]'"
            raise EngineError(f"llama-cpp-python is not installed: {hint}") from exc
        _close_devnull_at_exit()
        self._cls = llama_cpp.Llama
        self._llama = llama_cpp.Llama(str(model_path), vocab_only=True, verbose=False)
        self.adds_bos = bool(self._llama._model.add_bos_token())
        bos = self._llama.token_bos()
        self.bos_text = self._llama._model.token_get_text(bos) if bos != -1 else ""
        eos = self._llama.token_eos()
        self.eos_text = self._llama._model.token_get_text(eos) if eos != -1 else ""

    def tokens(self, text: str, *, add_bos: bool) -> int:
        """Tokens of `text` as llama-cpp-python's server tokenizes prompts (specials parsed)."""
        return len(self._llama.tokenize(text.encode("utf-8"), add_bos=add_bos, special=True))

    def chat(self, messages: list[dict[str, Any]], params: dict[str, Any]) -> _Rendered:
        """The chat prompt as the server renders it: text, whether BOS is added, tokens."""
        extra = {k: params[k] for k in _CHAT_RENDER_PARAMS if k in params}
        try:
            # The server's own dispatch (chat_format, GGUF template, handler) runs on the
            # stand-in, so the prompt is the very one the server will build.
            self._cls.create_chat_completion(_Stand(self._llama), messages=messages, **extra)  # type: ignore[arg-type]
        except _Rendered as rendered:
            return rendered
        except Exception as exc:  # the template or handler refused these messages
            raise EngineError(f"chat template rejected the request: {exc}", status=400) from exc
        raise AssertionError("the chat handler returned without building a prompt")

    def close(self) -> None:
        """Free the vocabulary."""
        self._llama.close()


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class EmbeddedLlamaCpp:
    """llama-cpp-python's OpenAI server, started and owned by the factory."""

    supports_continuation = True  # chats are continued through a rendered completion

    def __init__(
        self,
        model_path: Path | str,
        *,
        name: str = "llamacpp-0",
        n_ctx: int = 2048,
        host: str = "127.0.0.1",
        port: int = 0,
        python: str = sys.executable,
        ready_timeout: float = 120.0,
        stop_timeout: float = 10.0,
        extra_buffers: bool = False,
    ) -> None:
        if n_ctx <= 0:
            raise ValueError("n_ctx must be positive: prompts are checked against it")
        self.name = name
        self.model_path = Path(model_path)
        self.n_ctx, self.host, self.port, self.python = n_ctx, host, port, python
        self.ready_timeout, self.stop_timeout = ready_timeout, stop_timeout
        self.extra_buffers = extra_buffers  # llama.cpp's AMX / repacked weights, see above
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path: Path | None = None
        self.api_key: str | None = None  # made up at each start
        self._http: OpenAIEngine | None = None
        self._tokenizer: Tokenizer | None = None

    @property
    def http(self) -> OpenAIEngine:
        """The OpenAI-compatible client of the running server."""
        if self._http is None:
            raise EngineError(f"{self.name}: not started")
        return self._http

    @property
    def tokenizer(self) -> Tokenizer:
        """The in-process tokenizer of the running model."""
        if self._tokenizer is None:
            raise EngineError(f"{self.name}: not started")
        return self._tokenizer

    async def start(self) -> None:
        """Launch the server and wait until it serves; fail with its log if it cannot."""
        if self.process is not None:
            return
        try:
            self._tokenizer = await anyio.to_thread.run_sync(Tokenizer, self.model_path)
        except ValueError as exc:  # no such file, or llama.cpp could not read it
            raise EngineError(f"{self.name}: cannot load {self.model_path}: {exc}") from exc
        port = self.port or _free_port(self.host)
        self.log_path = Path(tempfile.mkdtemp(prefix="tokenfactory-llamacpp-")) / "server.log"
        self.api_key = secrets.token_urlsafe(24)  # only the factory may use its engine
        # HOST, PORT and CONFIG_FILE in the environment would override the arguments.
        env = {k: v for k, v in os.environ.items() if k not in ("HOST", "PORT", "CONFIG_FILE")}
        env["API_KEY"] = self.api_key  # by environment: argv is readable by anyone in ps
        env["PYTHONUNBUFFERED"] = "1"  # the log is read when the server fails
        launcher = _LAUNCHER.format(parent=os.getpid(), extra_buffers=self.extra_buffers)
        command = [self.python, "-c", launcher, "--model", str(self.model_path)]
        command += ["--host", self.host, "--port", str(port), "--n_ctx", str(self.n_ctx)]
        # A request arriving mid-stream would otherwise cut the running one short.
        command += ["--interrupt_requests", "False", "--verbose", "False"]
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        url_host = f"[{self.host}]" if ":" in self.host else self.host
        # /docs needs no lock: /v1/models waits behind the generation in progress.
        self._http = OpenAIEngine(
            self.name, f"http://{url_host}:{port}", "default", api_key=self.api_key,
            health_paths=("/docs",),
        )  # fmt: skip
        with anyio.move_on_after(self.ready_timeout):
            while self.process.poll() is None:
                # A short probe: an answer is instant once the model is loaded.
                if await self._http.status_of("/v1/models", timeout=1.0) == 200:
                    self.port = port
                    return
                await anyio.sleep(0.1)  # poll interval while the model loads
        code, output = self.process.poll(), self.log_path.read_text(errors="replace")
        tail = "\n".join(output.splitlines()[-30:])
        await self.stop()
        why = f"exited with {code}" if code is not None else f"not ready in {self.ready_timeout}s"
        raise EngineError(f"{self.name}: llama.cpp server {why}; its log ends:\n{tail}")

    async def stop(self) -> None:
        """Terminate the server's process group: SIGTERM, then SIGKILL after stop_timeout."""
        if self._http is not None:
            await self._http.stop()
        if self.process is not None:
            process, self.process = self.process, None
            with contextlib.suppress(ProcessLookupError):  # it may have exited already
                os.killpg(process.pid, signal.SIGTERM)
            try:
                await anyio.to_thread.run_sync(process.wait, self.stop_timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                await anyio.to_thread.run_sync(process.wait)
        if self._tokenizer is not None:
            self._tokenizer.close()
            self._tokenizer = None
        if self.log_path is not None:
            shutil.rmtree(self.log_path.parent, ignore_errors=True)
            self.log_path = None

    def _prepare(self, request: EngineRequest) -> tuple[str, dict[str, Any], int]:
        """The request's path and body, and the prompt tokens the server will process."""
        if request.kind == "chat":
            rendered = self.tokenizer.chat(list(request.messages or []), request.params)
            if not request.continuation:
                path, body = self.http.request_body(request)
                return path, body, len(rendered.tokens)
            request = self._as_completion(request, rendered)
        path, body = self.http.request_body(request)
        return path, body, self.tokenizer.tokens(body["prompt"], add_bos=True)

    def _as_completion(self, request: EngineRequest, rendered: _Rendered) -> EngineRequest:
        """A chat to continue as a completion: llama-cpp-python has no continue_final_message."""
        prompt, tok = rendered.text, self.tokenizer
        if not rendered.add_bos and tok.adds_bos and prompt.startswith(tok.bos_text):
            prompt = prompt[len(tok.bos_text) :]  # the completion endpoint adds BOS itself
        params = {k: v for k, v in request.params.items() if k not in _CHAT_RENDER_PARAMS}
        stop = params.get("stop") or []
        # The chat handler stops at the EOS text too; keep that for a continued reply.
        params["stop"] = [stop] if isinstance(stop, str) else [*stop]
        if tok.eos_text:
            params["stop"].append(tok.eos_text)
        return dataclasses.replace(request, kind="completion", prompt=prompt, params=params)

    async def stream(self, request: EngineRequest) -> AsyncGenerator[Delta | Usage, None]:
        """Generated text as it comes, then Usage counted here (the server sends none)."""
        path, body, prompt_tokens = self._prepare(request)
        if prompt_tokens >= self.n_ctx:
            too_long = f"the prompt takes {prompt_tokens} tokens, the context {self.n_ctx}"
            raise EngineError(f"{self.name}: {too_long}", status=400)
        generated = 0
        async with contextlib.aclosing(self.http.stream_body(path, body)) as items:
            async for item in items:
                if isinstance(item, Usage):  # a server that reports usage is believed
                    yield item
                    return
                generated += self._tokens_in(item)
                yield item
        yield Usage(prompt_tokens=prompt_tokens, completion_tokens=generated)

    def _tokens_in(self, delta: Delta) -> int:
        """Tokens behind streamed chunks of llama-cpp-python (its closing chunk, which
        carries only the finish reason, is no piece)."""
        # A chunk is one token, except where a character's UTF-8 bytes span several
        # tokens: the server holds them back and sends the character as one chunk.
        # ASCII can't be such a character; for the rest, the tokenizer tells.
        tokens = 0
        for piece in delta.pieces:
            if piece.isascii():
                tokens += 1
            else:
                tokens += max(1, self.tokenizer.tokens(piece, add_bos=False))
        return tokens

    async def count_tokens(self, text: str) -> int:
        """Tokens `text` takes, without BOS, counted in-process."""
        return self.tokenizer.tokens(text, add_bos=False)

    async def load(self) -> Load | None:
        """None: llama-cpp-python exposes no load signals."""
        return None

    async def healthy(self) -> bool:
        """Whether the server process runs and answers."""
        if self.process is None or self.process.poll() is not None:
            return False
        return await self.http.healthy()


if TYPE_CHECKING:  # mypy checks that this adapter is an Engine
    _engine: Engine = EmbeddedLlamaCpp("")
