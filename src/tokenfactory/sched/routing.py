"""Routing: which replica a request goes to, from the replicas' load signals."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

ROUTERS = ("round_robin", "least_load", "prefix_affinity")

# Prefix affinity keeps a session on its replica unless that one is this much busier.
AFFINITY_SLACK = 1.5


@dataclass(frozen=True, slots=True)
class ReplicaLoad:
    """A replica's load as a router sees it: queued and running work, health."""

    index: int
    outstanding_tokens: int
    healthy: bool = True


def route(
    router: str,
    loads: Sequence[ReplicaLoad],
    counter: int,
    affinity: int | None = None,
    prefix_tokens: int = 0,
) -> int:
    """The index of the replica to send a request to.

    counter: how many requests were routed before (for round robin); affinity: the
    replica that holds the request's session prefix, if any, and prefix_tokens how long
    that prefix is: there the request adds only its new tokens, so least load counts it
    less by that much.
    """
    healthy = [r for r in loads if r.healthy] or list(loads)
    if router == "round_robin":
        return healthy[counter % len(healthy)].index

    def load(r: ReplicaLoad) -> tuple[int, int]:
        saved = prefix_tokens if r.index == affinity else 0
        return (r.outstanding_tokens - saved, r.index)

    least = min(healthy, key=load)
    if router == "prefix_affinity" and affinity is not None:
        home = next((r for r in healthy if r.index == affinity), None)
        if home is not None and home.outstanding_tokens <= (
            AFFINITY_SLACK * least.outstanding_tokens + 4096
        ):
            return home.index
    if router not in ROUTERS:
        raise ValueError(f"unknown router {router!r}")
    return least.index
