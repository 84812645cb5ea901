"""Demand: length distributions, arrival processes, human sessions, agent loops, traces."""

from tokenfactory.workload.agents import AgentLoops
from tokenfactory.workload.arrivals import ClosedLoop, OpenLoop, offline, poisson
from tokenfactory.workload.composite import Composite
from tokenfactory.workload.lengths import (
    Choice,
    Exponential,
    Fixed,
    Length,
    LogNormal,
    Normal,
    Uniform,
    as_length,
    parse_length,
)
from tokenfactory.workload.loops import ContextLoops
from tokenfactory.workload.mix import TierMix
from tokenfactory.workload.request import KINDS, TIERS, Ids, Request
from tokenfactory.workload.sessions import ChatSessions
from tokenfactory.workload.source import Workload
from tokenfactory.workload.trace import read_trace, write_trace

__all__ = [
    "KINDS",
    "TIERS",
    "AgentLoops",
    "ChatSessions",
    "Choice",
    "ClosedLoop",
    "Composite",
    "ContextLoops",
    "Exponential",
    "Fixed",
    "Ids",
    "Length",
    "LogNormal",
    "Normal",
    "OpenLoop",
    "Request",
    "TierMix",
    "Uniform",
    "Workload",
    "as_length",
    "offline",
    "parse_length",
    "poisson",
    "read_trace",
    "write_trace",
]
