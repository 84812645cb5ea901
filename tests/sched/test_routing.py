"""Routing: which replica a request goes to, from load signals alone."""

from __future__ import annotations

import pytest

from tokenfactory.sched import ReplicaLoad, route
from tokenfactory.sched.routing import AFFINITY_SLACK


def loads(*tokens: int, down: tuple[int, ...] = ()) -> list[ReplicaLoad]:
    return [ReplicaLoad(i, t, i not in down) for i, t in enumerate(tokens)]


def test_round_robin_cycles_through_the_replicas() -> None:
    replicas = loads(0, 10_000, 5)
    assert [route("round_robin", replicas, n) for n in range(7)] == [0, 1, 2, 0, 1, 2, 0]


def test_round_robin_skips_unhealthy_replicas() -> None:
    replicas = loads(0, 0, 0, 0, down=(1, 2))
    assert [route("round_robin", replicas, n) for n in range(4)] == [0, 3, 0, 3]


def test_least_load_picks_the_fewest_outstanding_tokens() -> None:
    assert route("least_load", loads(500, 20, 300), 0) == 1
    assert route("least_load", loads(500, 20, 20), 7) == 1  # ties: the lowest index
    assert route("least_load", loads(500, 20, 300, down=(1,)), 0) == 2


def test_least_load_counts_only_the_new_tokens_where_the_prefix_is_cached() -> None:
    # Replica 0 holds the session's 3000-token prefix: there the request adds 3000 fewer.
    assert route("least_load", loads(2500, 1000), 0, affinity=0, prefix_tokens=3000) == 0
    assert route("least_load", loads(4500, 1000), 0, affinity=0, prefix_tokens=3000) == 1
    assert route("least_load", loads(2500, 1000), 0, affinity=0) == 1  # no prefix: no credit
    assert route("least_load", loads(2500, 1000, down=(0,)), 0, affinity=0, prefix_tokens=3000) == 1


def test_prefix_affinity_keeps_a_session_home_unless_it_is_much_busier() -> None:
    least = 10_000
    within = int(AFFINITY_SLACK * least + 4096)
    assert route("prefix_affinity", loads(within, least), 0, affinity=0) == 0
    assert route("prefix_affinity", loads(within + 1, least), 0, affinity=0) == 1
    assert route("prefix_affinity", loads(4096, 0), 0, affinity=0) == 0  # idle fleet: small slack
    assert route("prefix_affinity", loads(5000, 0), 0, affinity=0) == 1
    assert route("prefix_affinity", loads(300, 200, 100), 0, affinity=None) == 2  # no home


def test_prefix_affinity_never_sends_a_session_to_an_unhealthy_home() -> None:
    assert route("prefix_affinity", loads(0, 50, 10, down=(0,)), 0, affinity=0) == 2


def test_with_every_replica_down_routing_still_picks_one() -> None:
    replicas = loads(30, 10, down=(0, 1))
    assert route("least_load", replicas, 0) == 1
    assert route("round_robin", replicas, 1) == 1


def test_an_unknown_router_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown router"):
        route("random", loads(0, 0), 0)
