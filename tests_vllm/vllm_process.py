"""A real vLLM OpenAI server as a child process: start it, wait until it serves, stop it.

vLLM runs from its own virtual environment (.venv-vllm, built by `make test-vllm`), on
the CPU, serving a model folder the tests wrote. A server that does not come up fails
the test run with the end of its log; it is never skipped.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
VLLM_PYTHON = Path(os.environ.get("VLLM_PYTHON", REPO / ".venv-vllm" / "bin" / "python"))
SERVED_NAME = "tiny-llama"
# Long enough for a request that keeps the server busy for half a minute (the tiny model
# makes about 400 tokens/s here) while a test looks at vLLM's queue: on a busy machine
# the API server can lag the engine by seconds, and such a request must outlast that.
MAX_MODEL_LEN = 16384
# Start-up on one core (imports, model load, KV cache allocation) takes 15 to 40 s here;
# the deadline leaves room for a slow, busy machine.
READY_DEADLINE_S = 600.0
STOP_DEADLINE_S = 30.0
VLLM_CORE = min(os.sched_getaffinity(0))  # the core vLLM runs on (see server_command)
LOG_TAIL_CHARS = 6000


@dataclass(frozen=True)
class VllmServer:
    """A running server: where it listens and the name it serves the model under."""

    url: str
    model: str
    log: Path

    @property
    def v1(self) -> str:
        """The base URL an OpenAI client takes."""
        return self.url + "/v1"


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def log_tail(log: Path) -> str:
    """The end of a server log, for failure messages, without the tests' metric polls."""
    if not log.exists():
        return "(no log)"
    lines = log.read_text(errors="replace").splitlines(keepends=True)
    return "".join(line for line in lines if '"GET /metrics' not in line)[-LOG_TAIL_CHARS:]


def run_in_vllm_venv(args: list[str], log: Path) -> None:
    """Run a Python command in vLLM's venv; fail with its output if it fails."""
    require_vllm_venv()
    with log.open("w") as out:
        done = subprocess.run(
            [str(VLLM_PYTHON), *args], stdout=out, stderr=subprocess.STDOUT, check=False
        )
    if done.returncode != 0:
        raise AssertionError(f"{args[0]} failed ({done.returncode}):\n{log_tail(log)}")


def require_vllm_venv() -> None:
    if not VLLM_PYTHON.exists():
        raise AssertionError(f"{VLLM_PYTHON} is missing: run `make test-vllm`, which builds it")


def server_command(model_dir: Path, port: int) -> list[str]:
    """The vLLM command line: one CPU, eager mode, float32, priority scheduling."""
    return [
        # All of vLLM on one core. Left alone, its model worker takes one core and its
        # engine core spins waiting on the worker on the other, which starves the API
        # server (and this test process): under any extra load it then streams tokens
        # and notices aborts seconds late. On one core its three processes share fairly.
        "taskset",
        "--cpu-list",
        str(VLLM_CORE),
        str(VLLM_PYTHON),
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        str(model_dir),
        "--served-model-name",
        SERVED_NAME,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--enforce-eager",  # no graph capture: faster start, and the CPU gains nothing
        "--dtype",
        "float32",  # exact greedy decoding, which the continuation test relies on
        "--max-model-len",
        str(MAX_MODEL_LEN),
        # One sequence at a time: a second request waits, so the tests can see vLLM's
        # queue and the order priority gives it. The tests send one request at a time
        # otherwise, so nothing is slower for it.
        "--max-num-seqs",
        "1",
        # The gateway sends each request's tier rank as its priority; vLLM refuses a
        # non-zero priority unless it schedules by priority.
        "--scheduling-policy",
        "priority",
        "--seed",
        "0",
    ]


def server_env() -> dict[str, str]:
    """The environment: offline, a 1 GiB KV cache, no telemetry."""
    env = dict(os.environ)
    env.update(
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        VLLM_CPU_KVCACHE_SPACE="1",  # GiB: a million tokens of this model; the default is 4
        VLLM_CPU_OMP_THREADS_BIND=str(VLLM_CORE),  # its worker's one thread, on that core
        VLLM_NO_USAGE_STATS="1",
        DO_NOT_TRACK="1",
    )
    return env


def start(model_dir: Path, log: Path) -> tuple[subprocess.Popen[bytes], VllmServer]:
    """Launch the server in its own process group and wait until /health answers 200."""
    require_vllm_venv()
    port = free_port()
    server = VllmServer(f"http://127.0.0.1:{port}", SERVED_NAME, log)
    with log.open("w") as out:
        # Its own session, so that stopping it reaches the engine core process it forks.
        process = subprocess.Popen(
            server_command(model_dir, port),
            stdout=out,
            stderr=subprocess.STDOUT,
            env=server_env(),
            start_new_session=True,
        )
    try:
        wait_ready(process, server)
    except BaseException:
        stop(process)
        raise
    return process, server


def wait_ready(process: subprocess.Popen[bytes], server: VllmServer) -> None:
    """Poll /health until it answers 200; fail if the process dies or time runs out."""
    limit = time.monotonic() + READY_DEADLINE_S
    with httpx.Client(timeout=5.0, trust_env=False) as client:
        while True:
            if process.poll() is not None:
                raise AssertionError(
                    f"vLLM exited with {process.returncode} before serving:\n"
                    + log_tail(server.log)
                )
            try:
                if client.get(server.url + "/health").status_code == 200:
                    return
            except httpx.HTTPError:
                pass  # not listening yet
            if time.monotonic() > limit:
                raise AssertionError(
                    f"vLLM did not serve within {READY_DEADLINE_S:.0f}s:\n" + log_tail(server.log)
                )
            time.sleep(0.5)  # poll interval


def stop(process: subprocess.Popen[bytes]) -> None:
    """Stop the server: SIGTERM to the API server, which shuts its engine down; then
    SIGKILL to whatever of its process group lingers past the deadline."""
    group = process.pid  # its own session: the group id is the leader's pid
    process.terminate()
    try:
        process.wait(timeout=STOP_DEADLINE_S)
    except subprocess.TimeoutExpired:
        _signal_group(group, signal.SIGKILL)
        process.wait(timeout=STOP_DEADLINE_S)
    limit = time.monotonic() + STOP_DEADLINE_S
    while _signal_group(group, 0):  # the engine core may outlive the API server a moment
        if time.monotonic() > limit:
            _signal_group(group, signal.SIGKILL)
            break
        time.sleep(0.1)  # poll interval


def _signal_group(group: int, sig: int) -> bool:
    """Send `sig` to the group; whether any process of it was still there."""
    try:
        os.killpg(group, sig)
    except ProcessLookupError:
        return False
    return True
