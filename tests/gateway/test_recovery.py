"""Two gateways on one PostgreSQL ledger: one bills only what a dead gateway left running.

A gateway that starts, or sweeps, while another streams leaves the live one's journal rows
alone (they end billed at their full count); once one is SIGKILLed, the other bills its
rows as `interrupted` after its lease, once each, and settles their reservations.
"""

from __future__ import annotations

import os
import threading
from datetime import datetime
from decimal import Decimal
from pathlib import Path

from floor_helpers import Gateway, MakeGateway, factory_toml, twin_app, wait_until
from servers import serving
from sqlalchemy import select
from test_crash import killed_gateway
from test_tiers import Stream, run

from tokenfactory.catalog import Catalog
from tokenfactory.gateway.journal import CREDIT
from tokenfactory.ledger import Ledger, Outcome
from tokenfactory.ledger.gateways import Gateways
from tokenfactory.ledger.open_requests import OpenRequests
from tokenfactory.ledger.schema import UsageRow

LEASE_S = 2.0


def start(gw: Gateway, keys: list[str], max_tokens: int) -> list[Stream]:
    """One stream per key on `gw`, each in its own thread."""
    streams = [Stream("default", max_tokens) for _ in keys]
    for key, s in zip(keys, streams, strict=True):
        threading.Thread(target=run, args=(gw, key, s), daemon=True).start()
    return streams


def owned_by(ledger: Ledger, name: str) -> set[str]:
    """Request ids of the journal rows the gateway `name` holds."""
    return {r.event.request_id for r in OpenRequests(ledger).running() if r.owner == name}


def recorded_at(ledger: Ledger, request_ids: list[str]) -> list[datetime]:
    """When each of these usage events was written."""
    query = select(UsageRow.recorded_at).where(UsageRow.request_id.in_(request_ids))
    with ledger._read() as session:
        return list(session.scalars(query))


def test_a_gateway_bills_only_a_dead_gateways_requests_after_its_lease(
    pg_database: str, catalog: Catalog, make_gateway: MakeGateway, tmp_path: Path
) -> None:
    ledger = Ledger(pg_database)
    ledger.migrate()
    budgeted, budget_secret = ledger.create_key("acme", budget_usd=Decimal("10"))
    unlimited, unlimited_secret = ledger.create_key("globex")
    keys = [budget_secret, unlimited_secret] * 2
    with serving(twin_app(catalog, speedup=1.0)) as twin:
        text = factory_toml([twin], concurrency=8)
        text = text.replace("[server]\n", f"[server]\nbatch_lease_s = {LEASE_S}\n", 1)
        config = tmp_path / "factory.toml"
        config.write_text(text)
        with killed_gateway(config, pg_database) as a_url:
            a = Gateway(a_url, ledger)
            # 1. B starts while A streams (B's start bills what dead gateways left).
            first = start(a, keys, 1500)
            wait_until(lambda: all(s.chunks > 0 for s in first), deadline_s=60)
            b = make_gateway(text=text, database=pg_database)
            names = [g.name for g in Gateways(ledger).all()]
            (b_name,) = [n for n in names if f":{os.getpid()}:" in n]  # in this process
            (a_name,) = set(names) - {b_name}
            assert owned_by(ledger, a_name) == {s.id for s in first}
            # The sweep B runs every third of its lease, run now: A's rows are A's.
            assert OpenRequests(ledger, "sweeper").recover() == 0
            assert all(ledger.event(s.id) is None for s in first)  # nothing billed yet
            assert not any(s.done.is_set() for s in first), "too short to show anything"
            for s in first:
                assert s.done.wait(timeout=60)
            # 2. A is killed mid-stream: B bills its rows, once its lease is past.
            second = start(a, keys, 3000)
            wait_until(
                lambda: all(2 * CREDIT < s.chunks < s.max_tokens // 2 for s in second),
                deadline_s=60,
            )
            # Renewed until the kill: A's lease ends after this (the database's clock).
            (lease,) = [g.lease_until for g in Gateways(ledger).all() if g.name == a_name]
        assert all(s.done.wait(timeout=30) and s.error is not None for s in second)
        wait_until(lambda: not owned_by(ledger, a_name), deadline_s=10 * LEASE_S)
        assert [g.name for g in Gateways(ledger).all()] == [b_name]  # A's lease dropped
        # B still serves.
        after = start(b, [budget_secret], 20)
        assert after[0].done.wait(timeout=60) and after[0].error is None

    events = {e.request_id: e for e in ledger.events(limit=1000)}
    assert sorted(events) == sorted(s.id for s in first + second + after)
    for s in first + after:  # ran to their end on a live gateway: their full count
        e = events[s.id]
        assert s.error is None and e.outcome == Outcome.OK, (s, e)
        assert e.output_tokens == s.chunks == s.max_tokens, (s, e)
    for s in second:  # billed by B for what A had journalled
        e = events[s.id]
        assert e.outcome == Outcome.INTERRUPTED, (s, e)
        assert s.chunks <= e.output_tokens <= s.chunks + CREDIT, (s, e)
    assert all(at > lease for at in recorded_at(ledger, [s.id for s in second]))
    assert OpenRequests(ledger).running() == []
    for key_id in (budgeted.id, unlimited.id):  # every reservation settled
        key = ledger.get_key(key_id)
        assert key is not None
        spent = sum(e.revenue_micros for e in events.values() if e.key_id == key_id)
        assert key.spent_micros == spent > 0
    ledger.close()
