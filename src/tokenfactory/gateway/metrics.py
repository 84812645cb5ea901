"""Prometheus metrics of the floor, one registry per app (no module state).

Latency follows the OpenTelemetry GenAI semantic conventions' names where one exists
(`gen_ai.server.time_to_first_token`, `gen_ai.server.time_per_output_token`,
`gen_ai.server.request.duration`, `gen_ai.client.token.usage`), in Prometheus form;
money, queues and service levels are tokenfactory's own.
"""

from __future__ import annotations

from typing import Generic, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.metrics import MetricWrapperBase

_LATENCY = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
_TPOT = (0.005, 0.01, 0.02, 0.04, 0.08, 0.15, 0.3, 0.6, 1.2)

M = TypeVar("M", bound=MetricWrapperBase)


class Labelled(Generic[M]):
    """A labelled metric whose children are remembered by their label values.

    prometheus_client's `labels()` checks, converts and locks on every call, several
    times what the count it leads to costs; a request counts in ten. The children are
    the metric's own (what it exports), found here by a dict lookup; there are as many
    as the metric holds anyway (tiers, outcomes, replicas, reasons).
    """

    def __init__(self, metric: M) -> None:
        self.metric = metric
        self._children: dict[tuple[str, ...], M] = {}

    def labels(self, *values: str) -> M:
        """The child for these label values, as `metric.labels(*values)`."""
        child = self._children.get(values)
        if child is None:
            child = self._children[values] = self.metric.labels(*values)
        return child


class FloorMetrics:
    """Every metric the gateway exports."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()

        def counter(name: str, doc: str, label: str, *more: str) -> Labelled[Counter]:
            return Labelled(Counter(name, doc, [label, *more], registry=r))

        def gauge(name: str, doc: str, label: str) -> Labelled[Gauge]:
            return Labelled(Gauge(name, doc, [label], registry=r))

        def histogram(name: str, doc: str, buckets: tuple[float, ...]) -> Labelled[Histogram]:
            return Labelled(Histogram(name, doc, ["tier"], buckets=buckets, registry=r))

        self.tokens = counter(
            "gen_ai_client_token_usage",
            "Tokens metered, by tier and kind (input, cached, output).",
            "tier",
            "kind",
        )
        self.requests = counter(
            "tokenfactory_requests",
            "Requests ended, by tier served and outcome.",
            "tier",
            "outcome",
        )
        self.ttft = histogram(
            "gen_ai_server_time_to_first_token_seconds", "Time to first token, by tier.", _LATENCY
        )
        self.tpot = histogram(
            "gen_ai_server_time_per_output_token_seconds", "Time per output token, by tier.", _TPOT
        )
        self.duration = histogram(
            "gen_ai_server_request_duration_seconds", "Request duration, by tier.", _LATENCY
        )
        self.revenue = counter(
            "tokenfactory_revenue_usd", "Revenue metered, by tier served.", "tier"
        )
        self.cost = counter(
            "tokenfactory_cost_usd", "Compute cost attributed to requests, by replica.", "replica"
        )
        self.slo_misses = counter(
            "tokenfactory_slo_misses", "Requests that missed their tier's objective.", "tier"
        )
        self.refused = counter(
            "tokenfactory_refused", "Requests refused before running, by reason.", "reason"
        )
        self.preemptions = Counter(
            "tokenfactory_preemptions",
            "Requests paused to make room for paying work.",
            registry=r,
        )
        self.retries = counter(
            "tokenfactory_retries",
            "Requests run again on another replica after an engine fault, by tier.",
            "tier",
        )
        self.queue_depth = gauge(
            "tokenfactory_queue_depth", "Requests waiting for a place, by tier.", "tier"
        )
        self.running = gauge("tokenfactory_running", "Requests running, by replica.", "replica")
        self.healthy = gauge(
            "tokenfactory_replica_healthy", "1 when the replica takes traffic.", "replica"
        )

    def render(self) -> bytes:
        """The Prometheus text exposition."""
        return generate_latest(self.registry)
