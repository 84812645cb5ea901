"""What the gateway's tests share: a twin app, factory files, the running gateway's handle."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

from tokenfactory.catalog import Catalog
from tokenfactory.engines.twin_app import create_twin_app
from tokenfactory.gateway.runtime import Floor
from tokenfactory.ledger import Ledger
from tokenfactory.perf.efficiency import efficiency_for
from tokenfactory.perf.model import Deployment
from tokenfactory.sim.replica import EngineLimits

ADMIN = "tf-admin-test-key"
PG = os.environ.get("TOKENFACTORY_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432")


def twin_app(catalog: Catalog, speedup: float = 20.0, max_num_seqs: int = 64) -> object:
    """A twin of Llama 3.1 8B on an H100 (vLLM), `speedup` times faster than real time."""
    d = Deployment(catalog.model("llama-3.1-8b"), catalog.gpu("H100-SXM"), "fp8", 1)
    return create_twin_app(d, efficiency_for("vllm"), EngineLimits(max_num_seqs, 8192), speedup)


@dataclass
class Gateway:
    """A running gateway, its ledger (opened separately) and a way to make keys."""

    url: str
    ledger: Ledger

    @property
    def v1(self) -> str:
        """The base URL an OpenAI client takes."""
        return self.url + "/v1"

    def key(self, tenant: str = "acme", **options: object) -> str:
        """A new API key's secret."""
        _, secret = self.ledger.create_key(tenant, **options)  # type: ignore[arg-type]
        return secret


def factory_toml(replicas: list[str], policy: str = "value", concurrency: int = 4) -> str:
    """A factory file text with one twin replica per URL."""
    out = [f'[server]\nadmin_key = "{ADMIN}"\n[scheduler]\npolicy = "{policy}"\n']
    for i, url in enumerate(replicas):
        out.append(
            f'[[replicas]]\nname = "twin-{i}"\nengine = "twin"\nurl = "{url}"\n'
            f'model = "llama-3.1-8b"\nserved_model = "llama-3.1-8b"\ngpu = "H100-SXM"\n'
            f'precision = "fp8"\nmax_concurrency = {concurrency}\n'
        )
    return "\n".join(out)


MakeGateway = Callable[..., Gateway]
floors: list[Floor] = []  # the floors of the running gateways, for tests that break engines
