"""The batch runner: every open batch's lines, run as batch-tier requests on the floor.

Lines go through the same dispatcher and engines as HTTP requests, so the policy queues
them behind paying work, they fill idle places, are paused for realtime requests and
resume, and are hurried as their window closes (the job's arrival is the batch's
creation). A bounded number per batch is in flight at once: as many as the floor has
places. Each finished line is written with its usage event in one transaction
(`BatchBook.finish`); a gateway that stops mid-batch resumes it on start, running only
the lines not yet written. A line stopped half-way (the gateway stops, the batch is
cancelled or expires) is recorded as an attempt under its own id: its work is cost, it
earns nothing, and the line's own request id stays free for the run that delivers it.
Gateways sharing a database run each batch on one of them at a time: the one holding its
claim, a lease in the database renewed while the batch runs (`BatchBook.claim`).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import replace
from datetime import UTC, datetime

import anyio

from tokenfactory.engines.base import EngineError
from tokenfactory.errors import EngineUnavailable, QuotaExceeded, TokenfactoryError
from tokenfactory.gateway import openai_types as oa
from tokenfactory.gateway.batch_input import ENDPOINTS, check
from tokenfactory.gateway.batch_output import UNRUN_ERRORS, failed_line, line_json
from tokenfactory.gateway.floor import Run
from tokenfactory.gateway.generate import ANSWERED_AS, Generator, Prepared
from tokenfactory.gateway.meter import served_tier, usage_event
from tokenfactory.ledger import KeyRecord
from tokenfactory.ledger.batch_records import BatchRecord, LineOutcome, LineRecord
from tokenfactory.ledger.batches import BatchBook
from tokenfactory.ledger.records import UsageEvent, round_usd, usd_to_micros

log = logging.getLogger("tokenfactory.gateway")
TIER = "batch"


class BatchRunner:
    """Drives every open batch of one floor to its end."""

    def __init__(self, generator: Generator, book: BatchBook) -> None:
        self.generator = generator
        self.floor = generator.floor
        self.book = book
        self.name = generator.name  # in batch claims: this gateway's name in the ledger
        self.lease_s = self.floor.factory.server.batch_lease_s
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._cancels: dict[str, asyncio.Event] = {}
        self._sweeper: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Take up every open batch no live gateway holds, now and from time to time."""
        await self._sweep()
        self._sweeper = asyncio.create_task(self._sweep_often(), name="batch sweeper")

    async def stop(self) -> None:
        """Stop all batches where they are; lines in flight are recorded as attempts, and
        the claims let go so that another gateway takes the batches up at once."""
        tasks = [t for t in (self._sweeper, *self._tasks.values()) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _sweep(self) -> None:
        for batch_id in await anyio.to_thread.run_sync(self.book.open_batches):
            self.run(batch_id)

    async def _sweep_often(self) -> None:
        """A batch whose gateway died is taken up once its lease is past."""
        while True:
            await asyncio.sleep(self.lease_s / 3)
            try:
                await self._sweep()
            except Exception:  # the ledger is briefly unreachable: try again next time
                log.exception("could not look for open batches")

    def run(self, batch_id: str) -> None:
        """Start driving a batch (a new one, or one to resume or cancel)."""
        if batch_id in self._tasks:
            return
        task = asyncio.create_task(self._drive(batch_id), name=f"batch {batch_id}")
        self._tasks[batch_id] = task
        task.add_done_callback(lambda t: self._done(batch_id, t))

    def cancel(self, batch_id: str) -> None:
        """The batch was moved to `cancelling`: stop its lines and close it."""
        self._cancels.setdefault(batch_id, asyncio.Event()).set()
        self.run(batch_id)

    def _done(self, batch_id: str, task: asyncio.Task[None]) -> None:
        self._tasks.pop(batch_id, None)
        self._cancels.pop(batch_id, None)
        if not task.cancelled() and task.exception() is not None:
            log.error("batch %s stopped", batch_id, exc_info=task.exception())

    # -- one batch ---------------------------------------------------------------------

    async def _drive(self, batch_id: str) -> None:
        """Run the batch while this gateway holds its claim (another gateway may)."""
        if not await anyio.to_thread.run_sync(self.book.claim, batch_id, self.name, self.lease_s):
            return
        this = asyncio.current_task()
        assert this is not None
        keeper = asyncio.create_task(self._keep(batch_id, this), name=f"lease {batch_id}")
        try:
            await self._drive_claimed(batch_id)
        finally:
            keeper.cancel()
            with anyio.CancelScope(shield=True):
                await asyncio.gather(keeper, return_exceptions=True)
                await anyio.to_thread.run_sync(self.book.unclaim, batch_id, self.name)

    async def _keep(self, batch_id: str, drive: asyncio.Task[None]) -> None:
        """Renew the claim while the batch runs; see a cancel asked on another gateway;
        stop the batch here if the claim was lost (this gateway stalled past its lease)."""
        while True:
            await asyncio.sleep(self.lease_s / 3)
            try:
                status = await anyio.to_thread.run_sync(
                    self.book.renew, batch_id, self.name, self.lease_s
                )
            except Exception:  # not renewed this time; the lease still has two tries' worth
                log.exception("could not renew the lease of batch %s", batch_id)
                continue
            if status is None:
                log.warning("lost the claim on batch %s: another gateway runs it", batch_id)
                drive.cancel()
                return
            if status == "cancelling":
                self._cancels.setdefault(batch_id, asyncio.Event()).set()

    async def _drive_claimed(self, batch_id: str) -> None:
        b = await self._load(batch_id)
        if b.status == "validating" and not await self._validate(b):
            return
        b = await self._load(batch_id)
        end = {"cancelling": "cancelled", "finalizing": "completed"}.get(b.status)
        if b.status == "in_progress":
            await anyio.to_thread.run_sync(self.book.release, b.id, b.key_id)
            end = await self._run_lines(b)
            if end == "completed":
                moved = await anyio.to_thread.run_sync(
                    self.book.move, b.id, "finalizing", ("in_progress",)
                )
                if not moved:  # cancelled just as its last line finished
                    end = "cancelled"
        if end is not None:
            await self._close(b, end)

    async def _load(self, batch_id: str) -> BatchRecord:
        b = await anyio.to_thread.run_sync(self.book.batch, batch_id)
        assert b is not None, batch_id
        return b

    async def _validate(self, b: BatchRecord) -> bool:
        """Check the input; store its lines and go on, or fail the batch with the errors."""
        content = await anyio.to_thread.run_sync(self.book.content, b.tenant_id, b.input_file_id)
        assert content is not None  # the route checked the file exists
        limit = self.floor.factory.server.max_body_bytes
        models = set(self.floor.models)
        checked = await anyio.to_thread.run_sync(check, content, b.endpoint, models, limit)
        if checked.errors:
            await anyio.to_thread.run_sync(self.book.fail, b.id, checked.errors)
            return False
        await anyio.to_thread.run_sync(self.book.start, b.id, checked.model, checked.lines)
        return True

    async def _run_lines(self, b: BatchRecord) -> str:
        """Run the pending lines until done, cancelled or expired; returns which."""
        lines = await anyio.to_thread.run_sync(self.book.pending, b.id)
        if not lines:
            return "completed"
        key = await anyio.to_thread.run_sync(self.floor.ledger.get_key, b.key_id)
        assert key is not None  # batches reference their key
        stop = self._cancels.setdefault(b.id, asyncio.Event())
        feed = asyncio.create_task(self._feed(b, key, lines))
        stopped = asyncio.create_task(stop.wait())
        left_s = (b.expires_at - datetime.now(UTC)).total_seconds()
        try:
            await asyncio.wait(
                (feed, stopped), timeout=max(0.0, left_s), return_when=asyncio.FIRST_COMPLETED
            )
            if feed.done():
                feed.result()  # an unexpected error stops the batch, to resume on restart
                return "completed"
            return "cancelled" if stop.is_set() else "expired"
        finally:
            for task in (feed, stopped):
                task.cancel()
            await asyncio.gather(feed, stopped, return_exceptions=True)

    async def _feed(self, b: BatchRecord, key: KeyRecord, lines: list[LineRecord]) -> None:
        # As many lines in flight as the floor has places: enough to fill idle capacity,
        # while the rest of the batch waits here rather than in the dispatcher's queue.
        places = asyncio.Semaphore(
            max(1, sum(r.max_concurrency for r in self.floor.dispatcher.replicas))
        )
        # The batch's creation on this process's monotonic clock: the policy's deadline.
        age_s = (datetime.now(UTC) - b.created_at).total_seconds()
        arrival = time.monotonic() - age_s
        async with asyncio.TaskGroup() as group:
            for line in lines:
                await places.acquire()
                group.create_task(self._line(b, key, line, arrival, places))

    async def _line(
        self,
        b: BatchRecord,
        key: KeyRecord,
        line: LineRecord,
        arrival: float,
        places: asyncio.Semaphore,
    ) -> None:
        try:
            await self._run_line(b, key, line, arrival)
        finally:
            places.release()

    async def _run_line(
        self, b: BatchRecord, key: KeyRecord, line: LineRecord, arrival: float
    ) -> None:
        rid = f"{b.id}-{line.line}"
        tier = self.floor.tiers[TIER]
        call = ENDPOINTS[b.endpoint].model_validate_json(line.body)
        try:
            p = self.generator.prepare(call, tier, rid, arrival)
        except TokenfactoryError as e:
            await self._finish(b, failed_line(b, line, rid, e), None)
            return
        reserve = 0 if key.budget_micros is None else usd_to_micros(round_usd(p.value))
        if reserve and not await anyio.to_thread.run_sync(
            self.book.reserve, b.id, line.line, key.id, reserve
        ):
            spent = QuotaExceeded("the key's budget is spent; raise it or use another key")
            await self._finish(b, failed_line(b, line, rid, spent), None)
            return
        run = Run(p.job, p.request, self.floor.dispatcher)
        started = datetime.now(UTC)
        pieces = run.stream()
        failure: EngineError | None = None
        try:
            async for _ in pieces:
                pass
        except EngineError as e:
            failure = e
        except BaseException:
            # Stopped half-way: the attempt is recorded under its own id, earning nothing.
            with anyio.CancelScope(shield=True):
                await pieces.aclose()
                await self._abandon(b, key, rid, p, run, started)
            raise
        finally:
            with anyio.CancelScope(shield=True):
                await pieces.aclose()
        event = self._event(key, rid, p, run, started)
        if failure is not None:
            event = replace(event, revenue_micros=0)  # nothing was delivered
            error = EngineUnavailable(f"the engine failed: {failure}")
            outcome = failed_line(b, line, rid, error)
            outcome = replace(outcome, input_tokens=event.input_tokens)
        else:
            usage = oa.usage_dict(event.input_tokens, event.output_tokens, event.cached_tokens)
            body = oa.full_response(
                rid,
                call.model,
                ANSWERED_AS[event.tier_served],
                p.kind,
                run.result.text,
                run.result.finish_reason,
                usage,
            )
            response = {"status_code": 200, "request_id": rid, "body": body}
            outcome = LineOutcome(
                line.line,
                "completed",
                line_json(b, line, response, None),
                event.input_tokens,
                event.cached_tokens,
                event.output_tokens,
            )
        await self._finish(b, outcome, event)
        self.generator.observe(
            run.result,
            tier,
            event.tier_served,
            event.revenue_micros,
            event.cost_micros,
            event.input_tokens,
        )

    def _event(
        self, key: KeyRecord, rid: str, p: Prepared, run: Run, started: datetime
    ) -> UsageEvent:
        r = run.result
        tier = self.floor.tiers[TIER]
        billed = served_tier(tier, r)
        return usage_event(
            request_id=rid,
            key_id=key.id,
            model=p.model_id,
            tier=tier,
            billed_tier=billed,
            prices=self.floor.prices[(p.model_id, billed)],
            result=r,
            prompt_tokens=r.prompt_tokens if r.prompt_tokens is not None else p.prompt_estimate,
            cost=self.floor.costs.get(r.replica),
            started_at=started,
        )

    async def _abandon(
        self, b: BatchRecord, key: KeyRecord, rid: str, p: Prepared, run: Run, started: datetime
    ) -> None:
        """Record a stopped attempt's work as cost (if it ever reached an engine)."""
        if not run.result.replica:
            return
        event = self._event(key, f"{rid}.stopped-{uuid.uuid4().hex[:8]}", p, run, started)
        try:
            await anyio.to_thread.run_sync(
                self.floor.ledger.record, replace(event, revenue_micros=0)
            )
        except Exception:  # the line itself is unharmed (still pending): log, go on stopping
            log.exception("could not record the stopped attempt of %s", rid)

    async def _finish(self, b: BatchRecord, outcome: LineOutcome, event: UsageEvent | None) -> None:
        """Write a line's outcome and event in one transaction; never cut by a cancel."""
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(self.book.finish, b.id, outcome, event)

    async def _close(self, b: BatchRecord, end: str) -> None:
        """Lines that never ran get error lines; output files written; final status."""
        unrun: dict[int, str] = {}
        if end in UNRUN_ERRORS:
            code, message = UNRUN_ERRORS[end]
            for line in await anyio.to_thread.run_sync(self.book.pending, b.id):
                error = {"code": code, "message": message}
                unrun[line.line] = line_json(b, line, None, error)
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(self.book.close, b.id, end, unrun)
