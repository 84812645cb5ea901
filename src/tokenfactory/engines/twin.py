"""The twin engine's core: the simulator's replica, driven in real time, feeding streams.

The replica is the simulator's own (continuous batching, chunked prefill, KV cache,
preemption), run by a `RealtimeEnvironment`. It tells the twin of every step end
(`on_step`, which also makes each decode run one step long), so every decoding sequence
gets its token when its step ends: tokens stream at the times the performance model gives.

Counting without a tokenizer: a prompt takes one token per 4 characters of its text
(at least 1), or exactly the `prompt_tokens` a request names. Output token k reads
`twin{k} `: the text is synthetic and says so.
"""

from __future__ import annotations

import asyncio
import itertools
import math
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from tokenfactory.catalog import Catalog
from tokenfactory.catalog.schema import PRECISIONS
from tokenfactory.errors import BadInput
from tokenfactory.perf.efficiency import efficiency_for
from tokenfactory.perf.model import Deployment, Efficiency, PerfModel
from tokenfactory.perf.model import deployment as perf_deployment
from tokenfactory.sched import POLICIES, Job, TierRule
from tokenfactory.sim.realtime import RealtimeEnvironment
from tokenfactory.sim.replica import EngineLimits, Replica, Seq
from tokenfactory.workload import Request

CHARS_PER_TOKEN = 4
DEFAULT_MAX_TOKENS = 256
# vLLM's buckets for time to first token, in seconds.
TTFT_BUCKETS = (
    *(0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0),
    *(7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0),
)


def count_tokens(text: str) -> int:
    """Tokens `text` takes for the twin: one per 4 characters, at least 1."""
    return max(1, -(-len(text) // CHARS_PER_TOKEN))


def token_text(index: int) -> str:
    """The synthetic text of output token `index`."""
    return f"twin{index} "


def twin_setup(
    catalog: Catalog,
    gpu: str,
    model: str,
    precision: str = "bf16",
    engine: str = "vllm",
    tensor_parallel: int = 1,
    max_num_seqs: int | None = None,
    max_batched_tokens: int | None = None,
) -> tuple[Deployment, Efficiency, EngineLimits]:
    """The deployment, speed and batching limits of an engine kind on catalog hardware."""
    if precision not in PRECISIONS:
        raise BadInput(f"precision must be one of {', '.join(PRECISIONS)}", param="--precision")
    for name, value in [("tensor-parallel", tensor_parallel), ("max-num-seqs", max_num_seqs)]:
        if value is not None and value < 1:
            raise BadInput(f"--{name} must be at least 1", param=f"--{name}")
    if max_batched_tokens is not None and max_batched_tokens < 1:
        raise BadInput("--max-batched-tokens must be at least 1", param="--max-batched-tokens")
    kind = catalog.engine(engine)
    deployment = perf_deployment(catalog, model, gpu, precision, tensor_parallel, engine)
    efficiency = efficiency_for(engine)
    if not PerfModel(deployment, efficiency).fits():
        raise BadInput(
            f"{model} at {precision} does not fit {tensor_parallel} x {gpu} with room for KV "
            "cache; raise --tensor-parallel or lower --precision"
        )
    limits = EngineLimits(
        max_num_seqs=max_num_seqs or kind.max_num_seqs,
        max_batched_tokens=max_batched_tokens or kind.max_batched_tokens,
        chunked_prefill=kind.chunked_prefill,
        block_size=kind.block_size,
    )
    return deployment, efficiency, limits


@dataclass(slots=True, eq=False)
class TwinStream:
    """One generation's progress: tokens produced so far and how it ended."""

    id: int
    prompt_tokens: int
    max_tokens: int
    start: int  # index of its first token (a continuation goes on counting)
    arrival_s: float
    produced: int = 0
    status: str | None = None  # "ok", "refused" or "aborted" once over
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def wait(self, seen: int) -> int:
        """Tokens produced so far, once more than `seen` or the stream is over."""
        while self.produced <= seen and self.status is None:
            self.changed.clear()
            await self.changed.wait()
        return self.produced

    async def done(self) -> None:
        """Wait until the stream is over."""
        while self.status is None:
            await self.wait(self.produced)


class Twin:
    """A simulated replica in real time, with vLLM-named metrics in its own registry."""

    def __init__(
        self,
        deployment: Deployment,
        efficiency: Efficiency,
        limits: EngineLimits,
        speedup: float = 1.0,
        name: str | None = None,
    ) -> None:
        self.deployment = deployment
        self.name = name or deployment.model.id
        self.max_context = deployment.model.max_context
        self.env = RealtimeEnvironment(speedup)
        self.perf = PerfModel(deployment, efficiency)
        # vLLM's priority scheduling: lower runs first, arrival order within a priority.
        policy = POLICIES["priority"]
        self.replica = Replica(
            0, self.env, self.perf, limits, policy, self._finished, on_step=self._stepped
        )
        self.streams: dict[int, TwinStream] = {}
        self._ids = itertools.count()
        self._tiers: dict[int, TierRule] = {}
        self.registry = CollectorRegistry()
        self._metrics()

    def _metrics(self) -> None:
        reg, r, label = self.registry, self.replica, {"model_name": self.name}
        names = ["model_name"]

        def gauge(name: str, doc: str) -> Gauge:
            return Gauge(name, doc, names, registry=reg)

        gauge("vllm:num_requests_running", "Requests in the batch.").labels(**label).set_function(
            lambda: r.running
        )
        gauge("vllm:num_requests_waiting", "Requests waiting to be scheduled.").labels(
            **label
        ).set_function(lambda: len(r.waiting))
        gauge("vllm:kv_cache_usage_perc", "KV cache usage; 1 means 100 percent.").labels(
            **label
        ).set_function(lambda: r.kv_used / r.capacity if r.capacity else 0.0)
        self.prompt_counter = Counter(
            "vllm:prompt_tokens", "Prefilled prompt tokens.", names, registry=reg
        ).labels(**label)
        self.generation_counter = Counter(
            "vllm:generation_tokens", "Generated tokens.", names, registry=reg
        ).labels(**label)
        self.ttft = Histogram(
            "vllm:time_to_first_token_seconds",
            "Time to first token, wall seconds.",
            names,
            registry=reg,
            buckets=TTFT_BUCKETS,
        ).labels(**label)

    def submit(
        self, prompt_tokens: int, max_tokens: int, priority: int = 0, start: int = 0
    ) -> TwinStream:
        """Queue a generation at the current wall time; BadInput if it can never fit."""
        self.env.catch_up()
        now = self.env.now
        sid = next(self._ids)
        stream = TwinStream(sid, prompt_tokens, max_tokens, start, now)
        self.streams[sid] = stream
        job = Job(sid, self._tier(priority), now, prompt_tokens, max_tokens, 0.0, 0.0)
        self.replica.submit(Request(sid, now, prompt_tokens, max_tokens), job)
        if stream.status == "refused":
            raise BadInput(
                f"{prompt_tokens + max_tokens} tokens of context do not fit this replica's "
                f"KV cache ({self.replica.capacity} tokens)",
                param="max_tokens",
            )
        return stream

    def abort(self, stream: TwinStream) -> None:
        """Drop a generation whose client left, freeing its batch slot and KV."""
        if stream.status is None:
            self.replica.abort(stream.id)
            self.streams.pop(stream.id, None)
            stream.status = "aborted"
            stream.changed.set()

    def _tier(self, priority: int) -> TierRule:
        tier = self._tiers.get(priority)
        if tier is None:
            # An engine neither gives up on nor paces a request: no objectives, no patience.
            tier = TierRule(f"priority {priority}", priority, 1.0, None, None, math.inf, False)
            self._tiers[priority] = tier
        return tier

    def _stepped(self) -> None:
        """A step ended: every decoding sequence has its new token."""
        clock, streams, generated = self.replica.clock, self.streams, 0
        for seq in self.replica.decoding.values():
            stream = streams[seq.job.id]
            produced = seq.gen + clock - seq.d0
            generated += produced - stream.produced
            self._advance(stream, produced)
        if generated:
            self.generation_counter.inc(generated)

    def _finished(self, seq: Seq, status: str) -> None:
        stream = self.streams.pop(seq.job.id)
        if status == "ok":
            self.generation_counter.inc(seq.gen - stream.produced)
            self._advance(stream, seq.gen)
        stream.status = status
        stream.changed.set()

    def _advance(self, stream: TwinStream, produced: int) -> None:
        if not stream.produced and produced:
            self.ttft.observe((self.env.now - stream.arrival_s) / self.env.speedup)
            self.prompt_counter.inc(stream.prompt_tokens)
        stream.produced = produced
        stream.changed.set()
