"""What the gateway's tests share: a twin app, factory files, the running gateway's handle."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx

from tokenfactory.catalog import Catalog
from tokenfactory.engines.twin_app import create_twin_app
from tokenfactory.gateway.runtime import Floor
from tokenfactory.ledger import Ledger, Outcome, UsageEvent
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


def wait_until(condition: Callable[[], bool], deadline_s: float = 30.0) -> None:
    """Poll `condition` (the gateway's own state) until it holds; fail at the deadline."""
    limit = time.monotonic() + deadline_s
    while not condition():
        assert time.monotonic() < limit, "condition not reached in time"
        time.sleep(0.005)  # polling the gateway's own metrics, with a deadline


def gauge(gw: Gateway, name: str, label: str) -> float:
    """One sample of a gateway's Prometheus metric, 0 when absent."""
    text = httpx.get(gw.url + "/metrics").text
    found = re.search(rf"^{name}\{{{label}\}} (\S+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


T0 = datetime(2026, 1, 1, tzinfo=UTC)


def interrupted_event(rid: str, key_id: int, tokens: int) -> UsageEvent:
    """What a journal row would bill for `tokens` output tokens if its gateway died."""
    return UsageEvent(
        request_id=rid,
        key_id=key_id,
        model="llama-3.1-8b",
        replica="r1",
        tier_requested="standard",
        tier_served="standard",
        input_tokens=10,
        output_tokens=tokens,
        started_at=T0,
        ended_at=T0,
        outcome=Outcome.INTERRUPTED,
        revenue_micros=tokens,
    )
