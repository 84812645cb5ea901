"""Prometheus metrics of the floor, one registry per app (no module state).

Latency follows the OpenTelemetry GenAI semantic conventions' names where one exists
(`gen_ai.server.time_to_first_token`, `gen_ai.server.time_per_output_token`,
`gen_ai.server.request.duration`, `gen_ai.client.token.usage`), in Prometheus form;
money, queues and service levels are tokenfactory's own.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_LATENCY = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
_TPOT = (0.005, 0.01, 0.02, 0.04, 0.08, 0.15, 0.3, 0.6, 1.2)


class FloorMetrics:
    """Every metric the gateway exports."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.tokens = Counter(
            "gen_ai_client_token_usage",
            "Tokens metered, by tier and kind (input, cached, output).",
            ["tier", "kind"],
            registry=r,
        )
        self.requests = Counter(
            "tokenfactory_requests",
            "Requests ended, by tier served and outcome.",
            ["tier", "outcome"],
            registry=r,
        )
        self.ttft = Histogram(
            "gen_ai_server_time_to_first_token_seconds",
            "Time to first token, by tier.",
            ["tier"],
            buckets=_LATENCY,
            registry=r,
        )
        self.tpot = Histogram(
            "gen_ai_server_time_per_output_token_seconds",
            "Time per output token, by tier.",
            ["tier"],
            buckets=_TPOT,
            registry=r,
        )
        self.duration = Histogram(
            "gen_ai_server_request_duration_seconds",
            "Request duration, by tier.",
            ["tier"],
            buckets=_LATENCY,
            registry=r,
        )
        self.revenue = Counter(
            "tokenfactory_revenue_usd", "Revenue metered, by tier served.", ["tier"], registry=r
        )
        self.cost = Counter(
            "tokenfactory_cost_usd",
            "Compute cost attributed to requests, by replica.",
            ["replica"],
            registry=r,
        )
        self.slo_misses = Counter(
            "tokenfactory_slo_misses",
            "Requests that missed their tier's objective.",
            ["tier"],
            registry=r,
        )
        self.refused = Counter(
            "tokenfactory_refused",
            "Requests refused before running, by reason.",
            ["reason"],
            registry=r,
        )
        self.preemptions = Counter(
            "tokenfactory_preemptions",
            "Requests paused to make room for paying work.",
            registry=r,
        )
        self.retries = Counter(
            "tokenfactory_retries",
            "Requests run again on another replica after an engine fault, by tier.",
            ["tier"],
            registry=r,
        )
        self.queue_depth = Gauge(
            "tokenfactory_queue_depth",
            "Requests waiting for a place, by tier.",
            ["tier"],
            registry=r,
        )
        self.running = Gauge(
            "tokenfactory_running", "Requests running, by replica.", ["replica"], registry=r
        )
        self.healthy = Gauge(
            "tokenfactory_replica_healthy",
            "1 when the replica takes traffic.",
            ["replica"],
            registry=r,
        )

    def render(self) -> bytes:
        """The Prometheus text exposition."""
        return generate_latest(self.registry)
