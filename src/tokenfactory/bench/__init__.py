"""Load generator for OpenAI-compatible endpoints, driven by the planner's workloads."""

from tokenfactory.bench.bounded import Capped
from tokenfactory.bench.client import Endpoint
from tokenfactory.bench.compare import Row, compare
from tokenfactory.bench.files import read_summary, write_run
from tokenfactory.bench.pnl import fetch_pnl
from tokenfactory.bench.report import Objective, failed, summarize
from tokenfactory.bench.runner import BenchRun, Bounds, probe, run_bench
from tokenfactory.bench.sample import Sample

__all__ = [
    "BenchRun",
    "Bounds",
    "Capped",
    "Endpoint",
    "Objective",
    "Row",
    "Sample",
    "compare",
    "failed",
    "fetch_pnl",
    "probe",
    "read_summary",
    "run_bench",
    "summarize",
    "write_run",
]
