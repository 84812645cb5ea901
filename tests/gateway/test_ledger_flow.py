"""The books on the floor: PostgreSQL ledgers, clients that leave mid-stream."""

from __future__ import annotations

import time

import httpx
import openai
from floor_helpers import MakeGateway


def test_the_gateway_keeps_its_books_in_postgresql(
    twin: str, make_gateway: MakeGateway, pg_database: str
) -> None:
    gw = make_gateway([twin], database=pg_database)
    key = gw.key("pg-tenant")
    c = openai.OpenAI(base_url=gw.v1, api_key=key, max_retries=0, timeout=60)
    ids = [
        c.completions.create(model="llama-3.1-8b", prompt="to postgres", max_tokens=9).id
        for _ in range(3)
    ]
    events = [gw.ledger.event(i) for i in ids]
    assert all(e is not None and e.output_tokens == 9 for e in events)
    pnl = gw.ledger.pnl()
    assert pnl["tokens"]["output"] == 27 and set(pnl["per_tenant"]) == {"pg-tenant"}
    assert gw.ledger.engine.url.get_backend_name() == "postgresql"


def test_a_client_that_leaves_mid_stream_is_billed_once_for_what_it_received(
    twin: str, make_gateway: MakeGateway
) -> None:
    gw = make_gateway([twin])
    key = gw.key()
    body = {"model": "llama-3.1-8b", "prompt": "a long story", "max_tokens": 2000, "stream": True}
    received, rid = 0, ""
    with httpx.stream(
        "POST",
        gw.v1 + "/completions",
        json=body,
        timeout=60,
        headers={"Authorization": f"Bearer {key}"},
    ) as r:
        for line in r.iter_lines():
            if line.startswith("data: {") and '"text":"' in line and '"text":""' not in line:
                rid = rid or line.split('"id":"', 1)[1].split('"', 1)[0]
                received += 1
                if received == 25:
                    break  # the client hangs up
    assert rid

    def recorded() -> bool:
        return gw.ledger.event(rid) is not None

    limit = time.monotonic() + 30
    while not recorded():
        assert time.monotonic() < limit
        time.sleep(0.01)  # the gateway writes the event when it sees the hang-up
    event = gw.ledger.event(rid)
    assert event is not None and event.outcome == "client_cancelled"
    # Billed once, for at least what it read and for no more than the gateway had sent
    # when it saw the hang-up (socket buffers hold a few more): far less than asked for.
    assert 25 <= event.output_tokens < 500
    assert len(gw.ledger.events()) == 1
