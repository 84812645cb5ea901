"""A tiny stand-in for the simulator: serve every request, call follow_up when it ends."""

from __future__ import annotations

import heapq
from collections.abc import Callable
from dataclasses import dataclass, field

from tokenfactory.workload import Request, Workload


@dataclass
class Served:
    """What the stand-in saw: each request, when it finished, and the most in flight at once."""

    requests: list[Request] = field(default_factory=list)
    finished: dict[int, float] = field(default_factory=dict)
    max_in_flight: int = 0


def drive(
    workload: Workload,
    service_s: Callable[[Request], float] = lambda r: 1.0,
    ok: Callable[[Request], bool] = lambda r: True,
) -> Served:
    """Every request starts at arrival and takes service_s(r); no queueing."""
    served = Served()
    events: list[tuple[float, int, int, Request]] = []  # (time, 0 arrive / 1 finish, id, r)
    for r in workload.initial():
        heapq.heappush(events, (r.arrival_s, 0, r.id, r))
    in_flight = 0
    while events:
        t, what, _, r = heapq.heappop(events)
        if what == 0:
            served.requests.append(r)
            in_flight += 1
            served.max_in_flight = max(served.max_in_flight, in_flight)
            heapq.heappush(events, (t + service_s(r), 1, r.id, r))
            continue
        in_flight -= 1
        served.finished[r.id] = t
        nxt = workload.follow_up(r, t, ok(r))
        if nxt is not None:
            assert nxt.arrival_s >= t
            heapq.heappush(events, (nxt.arrival_s, 0, nxt.id, nxt))
    return served
