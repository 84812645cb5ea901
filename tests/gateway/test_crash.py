"""Killed with SIGKILL while it streams under load, the gateway loses nothing and doubles
nothing: after each restart every token a client received is in the ledger exactly once
(and at most one journal credit more), the batch resumes and runs each line once, and no
reservation leaks or budget is overspent."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import openai
import pytest
from batch_helpers import ended, jsonl, line, output_lines, submit, wait_for
from floor_helpers import Gateway, factory_toml, twin_app, wait_until
from servers import free_port, serving
from test_batch_durability import _answers, check_billing, delivered_tokens
from test_tiers import Stream, run

from tokenfactory.catalog import Catalog
from tokenfactory.gateway.journal import CREDIT
from tokenfactory.ledger import Ledger, UsageEvent
from tokenfactory.ledger.batches import BatchBook
from tokenfactory.ledger.open_requests import OpenRequests

MODEL = "llama-3.1-8b"
KILLS = 3
SERVICE_TIERS = ("priority", "default", "flex")  # realtime, standard, flex
LINES = 24
LEASE_S = 2.0  # the gateways' lease: a killed one's requests are billed after it
# Budgets in dollars (None: unlimited). "tight" covers a few requests only, so later
# rounds are refused for budget while earlier ones are still being settled.
BUDGETS = {"acme": None, "globex": Decimal("1"), "tight": Decimal("0.0004")}


@dataclass
class Tenant:
    """A tenant's key."""

    name: str
    key_id: int
    secret: str
    budget_micros: int | None


@contextmanager
def killed_gateway(config: Path, database: str) -> Iterator[str]:
    """A `tokenfactory serve` process; SIGKILLed (with its process group) when the block
    ends, nothing shut down."""
    port = free_port()
    command = [sys.executable, "-m", "tokenfactory", "serve", "--config", str(config)]
    command += ["--database", database, "--port", str(port)]
    server = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: server.poll() is None and _answers(url), deadline_s=120)
        yield url
    finally:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait(timeout=30)


def database_for(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'ledger.db'}"
    return str(request.getfixturevalue("pg_database"))


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_sigkill_mid_stream_loses_no_token_and_doubles_none(
    catalog: Catalog, tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    database = database_for(backend, tmp_path, request)
    ledger = Ledger(database)
    ledger.migrate()
    tenants = []
    for name, budget in BUDGETS.items():
        record, secret = ledger.create_key(name, budget_usd=budget)
        tenants.append(Tenant(name, record.id, secret, record.budget_micros))
    batch_key, batch_secret = ledger.create_key("batchco")
    config = tmp_path / "factory.toml"
    streams: list[Stream] = []
    interrupted_rounds = []
    with serving(twin_app(catalog, speedup=1.0)) as twin:
        # A restart is a new gateway: what a killed one left running is billed, and its
        # batch taken up, once its lease is past. A short lease keeps the test short.
        text = factory_toml([twin], policy="value", concurrency=6)
        config.write_text(text.replace("[server]\n", f"[server]\nbatch_lease_s = {LEASE_S}\n", 1))
        batch_id = ""
        for kill in range(KILLS):
            with killed_gateway(config, database) as url:
                gw = Gateway(url, ledger)
                if not batch_id:
                    c = openai.OpenAI(base_url=gw.v1, api_key=batch_secret, max_retries=0)
                    lines = [line(f"q{i}", MODEL, 60, f"question {i}") for i in range(LINES)]
                    batch_id = submit(c, jsonl(lines)).id
                round_ = [
                    Stream(tier, rng.randint(150, 400)) for _ in tenants for tier in SERVICE_TIERS
                ]
                keys = [t.secret for t in tenants for _ in SERVICE_TIERS]
                threads = [
                    threading.Thread(target=run, args=(gw, key, s), daemon=True)
                    for key, s in zip(keys, round_, strict=True)
                ]
                for t in threads:
                    t.start()
                # A random moment while streams are mid-flight: enough tokens delivered
                # in all, and some stream both started and far from its end.
                threshold = rng.randint(30, 400)

                def mid_flight(round_: list[Stream] = round_, threshold: int = threshold) -> bool:
                    midway = any(0 < s.chunks < s.max_tokens - 2 * CREDIT for s in round_)
                    return midway and sum(s.chunks for s in round_) >= threshold

                wait_until(mid_flight, deadline_s=60)
            for s in round_:
                assert s.done.wait(timeout=30), "a client still waits on a killed gateway"
            streams += round_
            interrupted_rounds.append([s for s in round_ if s.error is not None and s.id])
            if kill == 0:
                halfway = BatchBook(ledger).batch(batch_id)
                assert halfway is not None and halfway.status == "in_progress", seed
                assert halfway.counts.completed < LINES, seed

        # The last restart bills what the third kill left running, and ends the batch.
        with killed_gateway(config, database) as url:
            c = openai.OpenAI(base_url=url + "/v1", api_key=batch_secret, max_retries=0)
            done = wait_for(c, batch_id, ended, deadline_s=120)
            out = output_lines(c, done.output_file_id)
            wait_until(lambda: OpenRequests(ledger).running() == [], deadline_s=10 * LEASE_S)

    assert OpenRequests(ledger).running() == [], "a journal row outlived its gateway"
    events = ledger.events(limit=100_000)
    assert len({e.request_id for e in events}) == len(events)
    by_id = {e.request_id: e for e in events}
    check_streams(streams, by_id, seed)
    for round_ in interrupted_rounds:
        assert any(by_id[s.id].outcome == "interrupted" for s in round_), seed
    check_keys(ledger, tenants, events, seed)

    # The batch: every line exactly once, billed once to its own key.
    assert done.status == "completed", (done.status, done.request_counts)
    assert sorted(o["custom_id"] for o in out) == sorted(f"q{i}" for i in range(LINES))
    check_billing(ledger, batch_id, batch_key.id, delivered_tokens(out))
    ledger.close()


def check_streams(streams: list[Stream], by_id: dict[str, UsageEvent], seed: int) -> None:
    """Each stream that reached its client is billed once: for every token it received,
    and at most one journal credit more."""
    started = [s for s in streams if s.id]
    assert len({s.id for s in started}) == len(started)
    assert sum(s.error is not None and s.chunks > 0 for s in started) >= KILLS, seed
    for s in started:
        e = by_id.get(s.id)
        assert e is not None, (seed, s.id, s.chunks, "never billed")
        assert s.chunks <= e.output_tokens <= s.chunks + CREDIT, (seed, s, e)
        if s.error is None:  # it ran to its end: billed exactly what it received
            assert e.output_tokens == s.chunks == s.max_tokens, (seed, s, e)
            assert e.outcome in ("ok", "preempted_resumed"), (seed, e)
        if e.outcome == "interrupted":
            assert s.error is not None, (seed, s, e)


def check_keys(ledger: Ledger, tenants: list[Tenant], events: list[UsageEvent], seed: int) -> None:
    """No reservation outlives the kills; no budget is spent past its end."""
    for t in tenants:
        key = ledger.get_key(t.key_id)
        assert key is not None
        billed = sum(e.revenue_micros for e in events if e.key_id == t.key_id)
        assert key.spent_micros == billed, (seed, t.name, key.spent_micros, billed)
        if t.budget_micros is not None:
            assert key.spent_micros <= t.budget_micros, (seed, t.name)
