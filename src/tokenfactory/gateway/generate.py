"""The completion endpoints: from an authorised, validated call to a metered response.

Order of checks, each a clean 4xx that loses nothing: model, tier, context, token rate,
budget (an estimate is reserved, the real charge settled at the end), admission. Then
the request runs through the floor; however it ends (done, client gone, engine failed)
its usage event is written once, through the journal's one writer (gateway/journal.py),
shielded from the client's cancellation, before it is answered. Should the
gateway die first, its journal row (opened with the reservation; for a stream, advanced
before tokens are sent: gateway/journal.py) is billed by a gateway that outlives it
(gateway/liveness.py).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import time
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal

import anyio
import orjson
from starlette.responses import Response

from tokenfactory.catalog import Model
from tokenfactory.economics.revenue import revenue
from tokenfactory.engines.base import EngineError, EngineRequest
from tokenfactory.errors import (
    BadInput,
    EngineUnavailable,
    Forbidden,
    QuotaExceeded,
    RateLimited,
    UnknownId,
)
from tokenfactory.gateway import openai_types as oa
from tokenfactory.gateway.faults import is_fault
from tokenfactory.gateway.floor import Result, Run
from tokenfactory.gateway.journal import Journal, Tab
from tokenfactory.gateway.limits import RateLimiter
from tokenfactory.gateway.liveness import instance_name
from tokenfactory.gateway.meter import served_tier, usage_event
from tokenfactory.gateway.metrics import FloorMetrics
from tokenfactory.gateway.queue_limits import check_queue
from tokenfactory.gateway.runtime import Floor
from tokenfactory.gateway.sse import EventStream
from tokenfactory.ledger import KeyRecord, Outcome, UsageEvent
from tokenfactory.ledger.open_requests import OpenRequests
from tokenfactory.ledger.records import round_usd, usd_to_micros
from tokenfactory.sched import Job, TierRule

# OpenAI's service_tier values and the tier each asks for (None: the key's default).
SERVICE_TIERS: dict[str | None, str | None] = {
    None: None,
    "auto": None,
    "default": None,
    "priority": "realtime",
    "flex": "flex",
}
# The name each tier answers with in the response's `service_tier`.
ANSWERED_AS = {"realtime": "priority", "standard": "default", "flex": "flex", "batch": "batch"}
CHARS_PER_TOKEN = 4  # for estimates only; billing uses the engine's counts
DEFAULT_OUTPUT_ESTIMATE = 256


@dataclass
class Generator:
    """The handler of /v1/chat/completions and /v1/completions."""

    floor: Floor
    metrics: FloorMetrics
    buckets: RateLimiter
    # This gateway's name in the ledger: its lease, its journal rows, its batch claims.
    name: str = field(default_factory=instance_name)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    journal: Journal = field(init=False)

    def __post_init__(self) -> None:
        self.journal = Journal(OpenRequests(self.floor.ledger, self.name))

    async def handle(self, key: KeyRecord, call: oa.Call) -> Response:
        """Check, admit, run and meter one call."""
        floor = self.floor
        self.model(call.model)
        tier = self._tier(call.service_tier, key)
        request_id = ("chatcmpl-" if isinstance(call, oa.ChatRequest) else "cmpl-") + _uuid4_hex()
        p = self.prepare(call, tier, request_id)
        kind, job, engine_request = p.kind, p.job, p.request
        if key.tokens_per_minute is not None:
            wait = await self.buckets.take(
                key.id, key.tokens_per_minute, p.prompt_estimate + p.output_estimate
            )
            if wait:
                self.metrics.refused.labels("rate_limit").inc()
                raise RateLimited(
                    f"rate limit of {key.tokens_per_minute} tokens per minute reached",
                    retry_after_s=wait,
                )
        # A budget is reserved before the run and settled after; unlimited keys skip it.
        # The reservation opens the request's journal row in the same transaction.
        reserve = 0 if key.budget_micros is None else usd_to_micros(round_usd(p.value))
        ticket = _Ticket(
            key, call, tier, p.model_id, request_id, reserve, datetime.now(UTC), p.prompt_estimate
        )
        if reserve:
            opening = self._journal_event(Result(), time.monotonic(), ticket, 0)
            if not await self.journal.open(opening, reserve):
                self.metrics.refused.labels("budget").inc()
                raise QuotaExceeded("the key's budget is spent; raise it or use another key")
            ticket.journalled = True
        run = Run(
            job, engine_request, floor.dispatcher, session=call.user, restartable=not call.stream
        )
        if call.stream:
            ticket.tab = Tab(
                self.journal,
                lambda n: self._journal_event(run.result, run.arrived, ticket, n),
                call.limit,
            )
            ticket.journalled = True  # its first token opens the row if the budget did not
        try:
            self._admit(job)
        except RateLimited:
            await self._refund(ticket)
            raise
        ticket.pieces = pieces = run.stream()
        try:
            first = await pieces.__anext__()
        except StopAsyncIteration:
            first = None
        except RateLimited:
            # It waited past its tier's patience without a place: refused, nothing ran.
            self.metrics.refused.labels("patience").inc()
            await self._refund(ticket)
            raise
        except EngineError as e:
            await self._finish(run, ticket)
            if not is_fault(e):  # the engine judged the request itself bad: the client's 4xx
                raise BadInput(f"the engine refused the request: {e}") from None
            raise EngineUnavailable(f"the engine failed before answering: {e}") from None
        except BaseException:
            await self._finish(run, ticket)
            raise
        if call.stream:
            return EventStream(self._sse(run, ticket, first, pieces, kind))
        return await self._whole(run, ticket, first, pieces, kind)

    def model(self, name: str) -> Model:
        """The catalog model a served name stands for; 404 for a name not served."""
        model = self.floor.models.get(name)
        if model is None:
            e = UnknownId("model", name, self.floor.models, param="model")
            e.code = "model_not_found"
            raise e
        return model

    def prepare(
        self, call: oa.Call, tier: TierRule, request_id: str, arrival_s: float | None = None
    ) -> Prepared:
        """A call's estimates, its scheduler job and its engine request (no side effects
        but a job id); refuses a call that cannot fit the model's context."""
        floor = self.floor
        model = self.model(call.model)
        text, limit = call.prompt_text(), call.limit
        prompt_estimate = max(1, len(text) // CHARS_PER_TOKEN)
        window = floor.context[call.model]
        if limit is not None and prompt_estimate + limit > window:
            # The field the client sent: a chat call's max_completion_tokens wins if given.
            chat_cap = isinstance(call, oa.ChatRequest) and call.max_completion_tokens
            sent = "max_completion_tokens" if chat_cap else "max_tokens"
            raise BadInput(
                f"{sent} {limit} plus the prompt (about {prompt_estimate} tokens) "
                f"exceeds the model's context of {window} tokens",
                param=sent,
            )
        output_estimate = limit or min(DEFAULT_OUTPUT_ESTIMATE, window - prompt_estimate)
        value = revenue(floor.prices[(model.id, tier.name)], prompt_estimate, 0, output_estimate)
        arrival = time.monotonic() if arrival_s is None else arrival_s
        job = Job(
            next(self._ids), tier, arrival, prompt_estimate, output_estimate, float(value), 0.0
        )
        chat = isinstance(call, oa.ChatRequest)
        request = EngineRequest(
            request_id=request_id,
            model=call.model,
            kind="chat" if chat else "completion",
            messages=[m.model_dump(exclude_none=True) for m in call.messages]
            if isinstance(call, oa.ChatRequest)
            else None,
            prompt=text if isinstance(call, oa.CompletionRequest) else None,
            max_tokens=limit,
            params=call.params(),
            priority=tier.rank,
        )
        return Prepared(model.id, prompt_estimate, output_estimate, value, job, request)

    def _admit(self, job: Job) -> None:
        """Raise RateLimited when the policy refuses the job or its tier's queue is full."""
        dispatcher, tier = self.floor.dispatcher, job.tier.name
        if not dispatcher.admit(job):
            self.metrics.refused.labels("admission").inc()
            raise RateLimited(
                f"the {tier} tier cannot start this request in time; retry later",
                retry_after_s=dispatcher.expected_wait_s(),
            )
        try:
            check_queue(self.floor.factory.scheduler.queue_limits, tier, dispatcher)
        except RateLimited:
            self.metrics.refused.labels("queue_full").inc()
            raise

    async def _refund(self, t: _Ticket) -> None:
        """Give back a budget reservation for a request refused before it ran."""
        if t.journalled:
            await self.journal.withdraw(t.request_id, t.key.id)

    def _tier(self, service_tier: str | None, key: KeyRecord) -> TierRule:
        if service_tier not in SERVICE_TIERS:
            raise BadInput(f"service_tier {service_tier!r} is not offered", param="service_tier")
        name = SERVICE_TIERS[service_tier] or key.default_tier
        if not key.allows(name):
            raise Forbidden(f"this key may not use the {name} tier", param="service_tier")
        return self.floor.tiers[name]

    async def _whole(
        self,
        run: Run,
        t: _Ticket,
        first: tuple[str, ...] | None,
        pieces: AsyncIterator[tuple[str, ...]],
        kind: str,
    ) -> Response:
        try:
            async for _ in pieces:
                pass
        except EngineError as e:
            # The client gets an error and none of the text: it pays for no tokens.
            run.result.output_tokens = 0
            await self._finish(run, t)
            raise EngineUnavailable(f"the engine failed mid-request: {e}") from None
        except BaseException:
            await self._finish(run, t)
            raise
        billed, usage = await self._finish(run, t)
        body = oa.full_response(
            t.request_id,
            t.call.model,
            ANSWERED_AS[billed],
            kind,
            run.result.text,
            run.result.finish_reason,
            usage,
        )
        return Response(orjson.dumps(body), media_type="application/json")

    async def _sse(
        self,
        run: Run,
        t: _Ticket,
        first: tuple[str, ...] | None,
        pieces: AsyncIterator[tuple[str, ...]],
        kind: str,
    ) -> AsyncGenerator[bytes, None]:
        created, model = int(time.time()), t.call.model
        answered = ANSWERED_AS[t.tier.name]
        finished = False
        tab = t.tab
        assert tab is not None  # streams have one
        # What is ready at once goes in one write: the opening chunk with the first burst
        # (in hand before the response starts), the end, usage and [DONE] together.
        opening = b""
        if kind == "chat":
            role = {"role": "assistant", "content": ""}
            opening = _event(oa.chat_chunk(t.request_id, model, answered, role, None, created))
        try:
            burst = first
            try:
                while burst is not None:
                    # Each burst's tokens are covered by the journal before they are sent;
                    # one longer than it covers goes in parts (gateway/journal.py).
                    while (covered := await tab.send(len(burst))) < len(burst):
                        yield opening + self._events(t, kind, burst[:covered], created)
                        opening, burst = b"", burst[covered:]
                    yield opening + self._events(t, kind, burst, created)
                    opening = b""
                    burst = await anext(pieces, None)
            except EngineError as e:
                error = {
                    "message": f"the engine failed mid-stream: {e}",
                    "type": "server_error",
                    "param": None,
                    "code": "engine_unavailable",
                }
                yield opening + _event({"error": error})
                return
            billed, usage = await self._finish(run, t)
            finished = True
            answered = ANSWERED_AS[billed]
            end: dict[str, Any] = (
                oa.chat_chunk(t.request_id, model, answered, {}, run.result.finish_reason, created)
                if kind == "chat"
                else oa.completion_chunk(
                    t.request_id, model, answered, "", run.result.finish_reason, created
                )
            )
            closing = [opening, _event(end)]
            if t.call.stream_options is not None and t.call.stream_options.include_usage:
                closing.append(_event(oa.usage_chunk(t.request_id, model, answered, kind, usage)))
            closing.append(b"data: [DONE]\n\n")
            yield b"".join(closing)
        finally:
            if not finished:
                await self._finish(run, t)

    def _events(self, t: _Ticket, kind: str, burst: tuple[str, ...], created: int) -> bytes:
        """The chunks of pieces that arrived together, one per piece: one piece is one
        token, and clients count chunks as tokens. One body for them all: the server
        writes it to the socket at once."""
        if len(burst) == 1:
            return self._piece(t, kind, burst[0], created)
        return b"".join([self._piece(t, kind, text, created) for text in burst])

    def _piece(self, t: _Ticket, kind: str, text: str, created: int) -> bytes:
        answered = ANSWERED_AS[t.tier.name]
        if kind == "chat":
            return _event(
                oa.chat_chunk(
                    t.request_id, t.call.model, answered, {"content": text}, None, created
                )
            )
        return _event(
            oa.completion_chunk(t.request_id, t.call.model, answered, text, None, created)
        )

    async def _finish(self, run: Run, t: _Ticket) -> tuple[str, dict[str, Any]]:
        """Meter the request once: ledger event, budget settled, metrics. Never cancelled."""
        if t.metered is None:
            with anyio.CancelScope(shield=True):
                t.metered = await self._meter(run, t)
        assert t.metered is not None  # the shielded block sets it or raises
        return t.metered

    async def _meter(self, run: Run, t: _Ticket) -> tuple[str, dict[str, Any]]:
        if t.pieces is not None:
            await t.pieces.aclose()  # stops the run if the client left mid-way
        if t.tab is not None:
            # Its last renewal lands before the row is closed, never after.
            with contextlib.suppress(Exception):
                await t.tab.settle()
        r = run.result
        prompt = r.prompt_tokens if r.prompt_tokens is not None else t.prompt_estimate
        billed_name = served_tier(t.tier, r)
        floor = self.floor
        event = usage_event(
            request_id=t.request_id,
            key_id=t.key.id,
            model=t.model_id,
            tier=t.tier,
            billed_tier=billed_name,
            prices=floor.prices[(t.model_id, billed_name)],
            result=r,
            prompt_tokens=prompt,
            cost=floor.costs.get(r.replica),
            started_at=t.started_at,
        )
        # The event, the settling of the reservation and the journal row's end: at once,
        # in the journal's next round; answered only once it is committed.
        await self.journal.close(event, t.reserve, journalled=t.journalled)
        self.observe(r, t.tier, billed_name, event.revenue_micros, event.cost_micros, prompt)
        usage = oa.usage_dict(prompt, r.output_tokens, event.cached_tokens)
        return billed_name, usage

    def _journal_event(self, r: Result, arrived: float, t: _Ticket, tokens: int) -> UsageEvent:
        """What the request is billed if the gateway dies now, `tokens` sent: the event
        of an interrupted request (nothing sent, nothing earned)."""
        elapsed = time.monotonic() - arrived
        now = replace(
            r,
            outcome=Outcome.INTERRUPTED.value,
            output_tokens=tokens,
            engine_s=max(0.0, elapsed - r.queued_s),
        )
        billed = served_tier(t.tier, now)
        event = usage_event(
            request_id=t.request_id,
            key_id=t.key.id,
            model=t.model_id,
            tier=t.tier,
            billed_tier=billed,
            prices=self.floor.prices[(t.model_id, billed)],
            result=now,
            prompt_tokens=r.prompt_tokens if r.prompt_tokens is not None else t.prompt_estimate,
            cost=self.floor.costs.get(r.replica),
            started_at=t.started_at,
        )
        return event if tokens else replace(event, revenue_micros=0)

    def observe(
        self,
        r: Result,
        tier: TierRule,
        billed: str,
        revenue_micros: int,
        cost_micros: int,
        prompt: int,
    ) -> None:
        """Count a finished request in the floor's metrics."""
        m = self.metrics
        m.requests.labels(billed, r.outcome).inc()
        m.tokens.labels(billed, "input").inc(prompt)
        m.tokens.labels(billed, "cached").inc(r.cached_tokens)
        m.tokens.labels(billed, "output").inc(r.output_tokens)
        # Integer over integer is correctly rounded: the float nearest the exact dollars.
        m.revenue.labels(billed).inc(revenue_micros / 1_000_000)
        if r.replica:
            m.cost.labels(r.replica).inc(cost_micros / 1_000_000)
        if r.ttft_s is not None:
            m.ttft.labels(tier.name).observe(r.ttft_s)
            m.duration.labels(tier.name).observe(r.queued_s + r.engine_s)
            if r.output_tokens > 1:
                m.tpot.labels(tier.name).observe(
                    max(0.0, r.queued_s + r.engine_s - r.ttft_s) / (r.output_tokens - 1)
                )
        if billed != tier.name:
            m.slo_misses.labels(tier.name).inc()
        m.preemptions.inc(r.preemptions)
        m.retries.labels(tier.name).inc(r.retries)


@dataclass(frozen=True, slots=True)
class Prepared:
    """A call made ready to run: estimates, its scheduler job, its engine request."""

    model_id: str
    prompt_estimate: int
    output_estimate: int
    value: Decimal
    job: Job
    request: EngineRequest

    @property
    def kind(self) -> Literal["chat", "completion"]:
        """Which endpoint's shapes answer it."""
        return self.request.kind


@dataclass
class _Ticket:
    """What the gateway needs to bill a call once it ends."""

    key: KeyRecord
    call: oa.Call
    tier: TierRule
    model_id: str
    request_id: str
    reserve: int
    started_at: datetime
    prompt_estimate: int
    pieces: AsyncGenerator[tuple[str, ...], None] | None = None
    metered: tuple[str, dict[str, Any]] | None = None
    tab: Tab | None = None  # a stream's write-ahead count
    journalled: bool = False  # whether it may have a journal row to close


def _uuid4_hex() -> str:
    """`uuid.uuid4().hex` without making the UUID object, which costs more than the
    random bytes: version 4 and the RFC 4122 variant set in 16 random bytes."""
    b = bytearray(os.urandom(16))
    b[6] = b[6] & 0x0F | 0x40
    b[8] = b[8] & 0x3F | 0x80
    return b.hex()


def _event(data: dict[str, Any]) -> bytes:
    try:
        encoded = orjson.dumps(data)
    except orjson.JSONEncodeError:
        # A lone surrogate in an engine's text: UTF-8 cannot carry it, a JSON escape can.
        encoded = json.dumps(data, separators=(",", ":")).encode()
    return b"data: " + encoded + b"\n\n"
