"""Scheduling policies: pure functions of the state and the time they are given.

The simulator and the gateway call the same functions, so what the planner predicts is
what the floor does. Nothing here does I/O or reads a clock.
"""

from tokenfactory.sched.job import Job, TierRule
from tokenfactory.sched.policies import POLICIES, FcfsPolicy, Policy, PriorityPolicy, ValuePolicy
from tokenfactory.sched.routing import ROUTERS, ReplicaLoad, route

__all__ = [
    "POLICIES",
    "ROUTERS",
    "FcfsPolicy",
    "Job",
    "Policy",
    "PriorityPolicy",
    "ReplicaLoad",
    "TierRule",
    "ValuePolicy",
    "route",
]
