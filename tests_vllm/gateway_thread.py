"""Our gateway over the vLLM server: uvicorn in a thread on loopback, a SQLite ledger.

The same composition as `tokenfactory serve` (build_floor + create_app), from a factory
file whose one replica is the vLLM server, as tests/gateway runs it over the twin.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import uvicorn
from vllm_process import VllmServer, free_port

from tokenfactory.catalog import Catalog
from tokenfactory.config.factory import load_factory
from tokenfactory.gateway.app import create_app
from tokenfactory.gateway.runtime import build_floor
from tokenfactory.ledger import Ledger

ADMIN = "tf-admin-vllm-test"
REPLICA = "vllm-cpu"
CATALOG_MODEL = "smollm2-135m"  # any catalog model: it only sets the prices
START_DEADLINE_S = 60.0


@dataclass
class Gateway:
    """A running gateway and its ledger (opened separately, as an operator would)."""

    url: str
    ledger: Ledger

    @property
    def v1(self) -> str:
        """The base URL an OpenAI client takes."""
        return self.url + "/v1"


def factory_toml(vllm: VllmServer) -> str:
    """A factory with one vLLM replica on a CPU host."""
    return (
        f'[server]\nadmin_key = "{ADMIN}"\n\n'
        f'[[replicas]]\nname = "{REPLICA}"\nengine = "vllm"\nurl = "{vllm.v1}"\n'
        f'model = "{CATALOG_MODEL}"\nserved_model = "{vllm.model}"\n'
        'cost_per_hour = "0.1"\nmax_concurrency = 4\n'
    )


@contextmanager
def gateway(vllm: VllmServer, catalog: Catalog, folder: Path) -> Iterator[Gateway]:
    """Serve the gateway until the block ends."""
    factory = folder / "factory.toml"
    factory.write_text(factory_toml(vllm))
    database = f"sqlite:///{folder / 'ledger.db'}"
    floor = build_floor(load_factory(factory, catalog), catalog, database)
    port = free_port()
    config = uvicorn.Config(
        create_app(floor), host="127.0.0.1", port=port, log_level="warning", lifespan="on"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    limit = time.monotonic() + START_DEADLINE_S
    while not server.started:
        if not thread.is_alive() or time.monotonic() > limit:
            raise AssertionError(f"the gateway on port {port} did not start")
        time.sleep(0.01)  # polling a flag the server thread sets, with a deadline
    ledger = Ledger(database)
    try:
        yield Gateway(f"http://127.0.0.1:{port}", ledger)
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        ledger.close()
