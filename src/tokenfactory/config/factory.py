"""The factory file: what `tokenfactory serve` runs.

One TOML file holds the server (address, database, admin key), the scheduler, the
replicas (engine kind and address, model, hardware, cost inputs) and tier and price
overrides. Flags on `serve` override the file; with no file the default factory serves
the embedded SmolLM2 on llama.cpp into a SQLite ledger.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator
from redis.connection import parse_url

from tokenfactory.catalog import Catalog
from tokenfactory.catalog.schema import Precision
from tokenfactory.config.fields import Money
from tokenfactory.config.load import load_model_text
from tokenfactory.config.locate import Located
from tokenfactory.config.scenario import EconomicsSpec, PricesSpec, Table, TierOverride
from tokenfactory.errors import ConfigError, UnknownId

EngineKind = Literal["llamacpp", "openai", "vllm", "sglang", "twin"]


class ServerSpec(Table):
    """Where the gateway listens and keeps its books."""

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    database: str = "sqlite:///tokenfactory.db"
    admin_key: str | None = None  # default: $TOKENFACTORY_ADMIN_KEY, else one is made
    max_body_bytes: int = Field(default=4_000_000, gt=0)
    request_timeout_s: float = Field(default=600.0, gt=0)
    health_probe_s: float = Field(default=2.0, gt=0)  # how often an unhealthy replica is probed
    # Scale-out: Redis shared by the gateways for rate limits (none: each keeps its own).
    redis: str | None = None
    redis_prefix: str = "tokenfactory:"  # one per factory sharing a Redis
    # A gateway's lease: after it, a dead gateway's batches move and its requests are billed.
    batch_lease_s: float = Field(default=10.0, gt=0)

    @field_validator("redis")
    @classmethod
    def _redis_url(cls, url: str | None) -> str | None:
        if url is not None:
            parse_url(url)  # type: ignore[no-untyped-call]  # its ValueError says what is wrong
        return url


class ReplicaSpec(Table):
    """One engine instance and what it costs."""

    name: str
    engine: EngineKind
    model: str  # catalog model id: prices, and the performance model where there is a GPU
    served_model: str | None = None  # the engine's own name for it (default: `model`)
    url: str | None = None  # OpenAI-compatible base URL (not for the embedded llamacpp)
    path: Path | None = Field(default=None, strict=False)  # GGUF for llamacpp
    gpu: str | None = None  # catalog GPU id; none for a CPU host
    gpus: int = Field(default=1, gt=0)
    tensor_parallel: int = Field(default=1, gt=0)
    precision: Precision = "bf16"
    max_concurrency: int = Field(default=8, gt=0)  # requests the gateway runs here at once
    # Faults: past these the attempt fails, the replica is marked unhealthy and a request
    # that has not started streaming is retried once on another replica.
    connect_timeout_s: float = Field(default=5.0, gt=0)
    first_token_timeout_s: float = Field(default=60.0, gt=0)
    stall_timeout_s: float = Field(default=30.0, gt=0)  # longest gap between two tokens
    cost_per_hour: Money | None = Field(default=None, ge=0)  # all-in, for hosts w/o a GPU
    economics: EconomicsSpec = EconomicsSpec()

    @model_validator(mode="after")
    def _addressable(self) -> ReplicaSpec:
        if self.engine == "llamacpp" and self.url is not None:
            raise ValueError("an embedded llamacpp replica takes `path`, not `url`")
        if self.engine != "llamacpp" and self.url is None:
            raise ValueError(f"engine {self.engine!r} needs `url`")
        if self.gpu is None and self.cost_per_hour is None:
            raise ValueError("give `gpu` (costs from the catalog) or `cost_per_hour`")
        return self


class QueueLimitsSpec(Table):
    """`[scheduler.queue_limits]`: requests of each tier that may wait for a place; more
    are refused with 429 and Retry-After, so a burst cannot grow the gateway's memory."""

    realtime: int = Field(default=256, ge=0)
    standard: int = Field(default=256, ge=0)
    flex: int = Field(default=64, ge=0)


class FactorySchedulerSpec(Table):
    """The floor's scheduling policy and router."""

    policy: Literal["fcfs", "priority", "value"] = "value"
    router: Literal["round_robin", "least_load", "prefix_affinity"] = "least_load"
    queue_limits: QueueLimitsSpec = QueueLimitsSpec()


class FactoryFile(Table):
    """The whole factory."""

    server: ServerSpec = ServerSpec()
    scheduler: FactorySchedulerSpec = FactorySchedulerSpec()
    replicas: tuple[ReplicaSpec, ...] = Field(min_length=1, strict=False)
    tiers: dict[str, TierOverride] = Field(default_factory=dict)
    prices: dict[str, PricesSpec] = Field(default_factory=dict)  # by catalog model id


# An embedded llama.cpp on this machine's CPU: the cost is the host's, not a GPU's.
DEFAULT_FACTORY = """
[[replicas]]
name = "smollm2-0"
engine = "llamacpp"
model = "smollm2-135m"
max_concurrency = 1
# AWS EC2 on-demand price of a c7i.large (2 vCPU, 4 GiB), us-east-1, 2025.
cost_per_hour = "0.08925"
"""


def load_factory(path: Path | None, catalog: Catalog) -> FactoryFile:
    """The factory in `path`, or the default one; ids checked against the catalog."""
    if path is None:
        factory, located = load_model_text(DEFAULT_FACTORY, "(default factory)", FactoryFile)
    else:
        try:
            text = path.read_text()
        except OSError as e:
            raise ConfigError(f"{path}: cannot read factory file ({e.strerror})") from None
        factory, located = load_model_text(text, str(path), FactoryFile)
    _check(factory, located, catalog, path.parent if path else Path())
    return factory


def _check(factory: FactoryFile, located: Located, catalog: Catalog, base: Path) -> None:
    names: set[str] = set()
    for i, r in enumerate(factory.replicas):
        table = ("replicas", i)
        if r.name in names:
            raise located.error(table, "name", f"replica name {r.name!r} used twice")
        names.add(r.name)
        for key, lookup, value in (("model", catalog.model, r.model), ("gpu", catalog.gpu, r.gpu)):
            if value is None:
                continue
            try:
                lookup(value)
            except UnknownId as e:
                raise located.error(table, key, e.message) from None
        if r.gpus % r.tensor_parallel:
            raise located.error(table, "tensor_parallel", "must divide gpus")
        if r.path is not None and not (base / r.path).is_file():
            raise located.error(table, "path", f"no such file: {base / r.path}")
    for tier_id in factory.tiers:
        if tier_id not in catalog.tiers:
            raise located.error(
                ("tiers",), tier_id, UnknownId("tier", tier_id, catalog.tiers).message
            )
    for model_id in factory.prices:
        if model_id not in catalog.models:
            raise located.error(
                ("prices",), model_id, UnknownId("model", model_id, catalog.models).message
            )
