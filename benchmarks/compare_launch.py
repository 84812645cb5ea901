"""Starting the servers of the gateway comparison, each pinned to its core."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from tokenfactory.ledger import Ledger

HERE = Path(__file__).resolve().parent
MODEL = "llama-3.1-8b"
GATEWAY_CORE, REST_CORE = 0, 1
# LiteLLM's prices for the model, per token: their values do not matter here, only that
# LiteLLM works out a cost for every request, as tokenfactory does.
LITELLM_CONFIG = """\
model_list:
  - model_name: {model}
    litellm_params:
      model: openai/{model}
      api_base: http://127.0.0.1:{upstream}/v1
      api_key: upstream-needs-none
    model_info:
      input_cost_per_token: 0.0000001
      output_cost_per_token: 0.0000004
general_settings:
  master_key: {key}
litellm_settings:
  telemetry: false
"""
FACTORY = """\
[server]
admin_key = "bench-admin"
database = "sqlite:///{ledger}"
[scheduler]
policy = "value"
[[replicas]]
name = "upstream-0"
engine = "openai"
url = "http://127.0.0.1:{upstream}/v1"
model = "{model}"
gpu = "H100-SXM"
precision = "fp8"
max_concurrency = 256
"""


@dataclass(frozen=True)
class Target:
    """One running server to measure: its process, port and API key."""

    name: str
    proc: subprocess.Popen[bytes]
    port: int
    key: str


def free_port() -> int:
    """A loopback port nobody listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(
    cmd: list[str], core: int, log: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """A server process pinned to one core, its output into `log`."""
    return subprocess.Popen(
        ["taskset", "-c", str(core), *cmd],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        env={**os.environ, **(env or {})},
    )


def wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path, deadline_s: float) -> None:
    """Poll `url` until it answers, the process dies, or the deadline passes."""
    limit = time.monotonic() + deadline_s
    while time.monotonic() < limit:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: the server exited; see {log}")
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)  # polling a server that is starting, with a deadline
    raise RuntimeError(f"{url} did not come up in {deadline_s:.0f} s; see {log}")


def _server(name: str, role: str, work: Path, core: int, *extra: str) -> Target:
    port = free_port()
    cmd = [sys.executable, str(HERE / "compare_servers.py"), role, "--port", str(port), *extra]
    log = work / f"{name}.log"
    proc = start(cmd, core, log)
    wait_ready(f"http://127.0.0.1:{port}/health", proc, log, 30)
    return Target(name, proc, port, "none")


def upstream(work: Path) -> Target:
    """The instant upstream, on the load generator's core."""
    return _server("upstream", "upstream", work, REST_CORE)


def bare(work: Path, upstream_port: int) -> Target:
    """The bare relay in front of the upstream, on the gateway core."""
    return _server("bare", "relay", work, GATEWAY_CORE, "--to", str(upstream_port))


def passthrough(work: Path, upstream_port: int) -> Target:
    """The bare HTTP pass-through in front of the upstream, on the gateway core."""
    return _server("passthrough", "passthrough", work, GATEWAY_CORE, "--to", str(upstream_port))


def asgi(work: Path, upstream_port: int) -> Target:
    """The bare pass-through on uvicorn (tokenfactory's server), on the gateway core."""
    return _server("asgi", "asgi", work, GATEWAY_CORE, "--to", str(upstream_port))


def tokenfactory(work: Path, upstream_port: int, ledger: Ledger) -> Target:
    """`tokenfactory serve`: value scheduling, metering into `ledger` (work/ledger.db)."""
    port = free_port()
    factory = work / "factory.toml"
    ledger_file = work / "ledger.db"
    factory.write_text(FACTORY.format(ledger=ledger_file, upstream=upstream_port, model=MODEL))
    ledger.migrate()
    _, key = ledger.create_key("bench")
    cmd = [sys.executable, "-m", "tokenfactory", "serve", "--config", str(factory)]
    log = work / "tokenfactory.log"
    proc = start([*cmd, "--port", str(port)], GATEWAY_CORE, log)
    wait_ready(f"http://127.0.0.1:{port}/health", proc, log, 120)
    return Target("tokenfactory", proc, port, key)


def litellm(work: Path, upstream_port: int, venv: Path) -> Target:
    """The LiteLLM proxy, one worker, with the upstream as an OpenAI-compatible model."""
    port, key = free_port(), "sk-bench"
    config = work / "litellm.yaml"
    config.write_text(LITELLM_CONFIG.format(model=MODEL, upstream=upstream_port, key=key))
    cmd = [str(venv / "bin" / "litellm"), "--config", str(config), "--host", "127.0.0.1"]
    log = work / "litellm.log"
    # LiteLLM's model price list ships in its wheel; without this it fetches one online.
    env = {"LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    proc = start([*cmd, "--port", str(port), "--num_workers", "1"], GATEWAY_CORE, log, env)
    wait_ready(f"http://127.0.0.1:{port}/health/liveliness", proc, log, 180)
    return Target("litellm", proc, port, key)


def cpu_seconds(pid: int) -> float:
    """CPU time (user and system) a process and all its descendants have used so far."""
    children: dict[int, list[int]] = {}
    times: dict[int, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue  # the process ended meanwhile
        # After the command: state, ppid, ... utime and stime are fields 14 and 15 of stat.
        children.setdefault(int(fields[1]), []).append(int(entry))
        times[int(entry)] = (int(fields[11]) + int(fields[12])) / tick
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        total += times.get(p, 0.0)
        todo += children.get(p, [])
    return total


def stop(targets: list[Target]) -> None:
    """Terminate the servers (last started first) and wait for them."""
    for t in reversed(targets):
        t.proc.terminate()
    for t in targets:
        t.proc.wait(timeout=30)
