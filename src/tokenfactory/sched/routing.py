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
) -> int:
    """The index of the replica to send a request to.

    counter: how many requests were routed before (for round robin); affinity: the
    replica that holds the request's session prefix, if any.
    """
    healthy = [r for r in loads if r.healthy] or list(loads)
    if router == "round_robin":
        return healthy[counter % len(healthy)].index
    least = min(healthy, key=lambda r: (r.outstanding_tokens, r.index))
    if router == "prefix_affinity" and affinity is not None:
        home = next((r for r in healthy if r.index == affinity), None)
        if home is not None and home.outstanding_tokens <= (
            AFFINITY_SLACK * least.outstanding_tokens + 4096
        ):
            return home.index
    if router not in ROUTERS:
        raise ValueError(f"unknown router {router!r}")
    return least.index
