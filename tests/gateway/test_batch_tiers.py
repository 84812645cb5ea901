"""Batch work on the floor's scheduler: it fills idle places and yields them to realtime
traffic, which starts at once while the paused batch line resumes later."""

from __future__ import annotations

import threading

import openai
from batch_helpers import ended, jsonl, line, output_lines, submit, wait_for
from floor_helpers import MakeGateway, gauge, twin_app, wait_until
from servers import serving
from test_tiers import Stream, run

from tokenfactory.catalog import Catalog

MODEL = "llama-3.1-8b"
LINES = 6
TOKENS = 300  # about two seconds a line on the twin in real time


def test_batch_fills_idle_places_and_yields_them_to_realtime(
    catalog: Catalog, make_gateway: MakeGateway
) -> None:
    with serving(twin_app(catalog, speedup=1.0)) as twin:
        gw = make_gateway([twin], policy="value", concurrency=2)
        key = gw.key()
        c = openai.OpenAI(base_url=gw.v1, api_key=key, max_retries=0, timeout=60)
        b = submit(c, jsonl([line(f"b{i}", MODEL, TOKENS) for i in range(LINES)]))
        # No other traffic: batch lines take every place the replica has.
        wait_until(lambda: gauge(gw, "tokenfactory_running", 'replica="twin-0"') == 2)
        assert c.batches.retrieve(b.id).status == "in_progress"

        realtime = Stream("priority", 20)
        client = threading.Thread(target=run, args=(gw, key, realtime))
        client.start()
        client.join(timeout=60)
        assert realtime.error is None and realtime.chunks == 20
        # It did not wait for a batch line to end (each runs about two seconds).
        assert realtime.ttft_s is not None and realtime.ttft_s < 1.0
        assert c.batches.retrieve(b.id).status == "in_progress"

        done = wait_for(c, b.id, ended)
    assert done.status == "completed" and done.request_counts is not None
    assert done.request_counts.completed == LINES
    out = output_lines(c, done.output_file_id)
    events = {e.request_id: e for e in gw.ledger.events()}
    lines = [events[o["response"]["request_id"]] for o in out]
    # Every line delivered and billed its tokens once, paused or not.
    assert all(e.output_tokens == TOKENS and e.tier_served == "batch" for e in lines)
    assert [o["response"]["body"]["usage"]["completion_tokens"] for o in out] == [TOKENS] * LINES
    paused = [e for e in lines if e.preemptions > 0]
    assert paused, "no batch line was paused for the realtime request"
    assert all(e.outcome == "preempted_resumed" for e in paused)
    first = events[realtime.id]
    assert first.tier_requested == "realtime" and first.output_tokens == 20
