"""Tiers on a saturated replica: realtime ahead of flex, flex paused and resumed, every
token in the ledger exactly once."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import openai
from floor_helpers import Gateway, MakeGateway, gauge, twin_app, wait_until
from servers import serving

from tokenfactory.catalog import Catalog


@dataclass
class Stream:
    """One client's streamed request: what it received and when."""

    tier: str
    max_tokens: int
    id: str = ""
    chunks: int = 0
    text: str = ""
    ttft_s: float | None = None
    error: BaseException | None = None
    done: threading.Event = field(default_factory=threading.Event)


def run(gw: Gateway, key: str, s: Stream) -> None:
    c = openai.OpenAI(base_url=gw.v1, api_key=key, max_retries=0, timeout=120)
    start = time.monotonic()
    try:
        for chunk in c.chat.completions.create(
            model="llama-3.1-8b",
            messages=[{"role": "user", "content": f"{s.tier} work"}],
            max_tokens=s.max_tokens,
            stream=True,
            service_tier=s.tier,  # type: ignore[arg-type]
        ):
            s.id = chunk.id
            if chunk.choices and chunk.choices[0].delta.content:
                s.chunks += 1
                s.text += chunk.choices[0].delta.content
                if s.ttft_s is None:
                    s.ttft_s = time.monotonic() - start
    except BaseException as e:  # reported by the test, not swallowed
        s.error = e
    finally:
        s.done.set()


def test_realtime_goes_first_flex_is_paused_and_resumed_and_every_token_is_billed_once(
    catalog: Catalog, make_gateway: MakeGateway
) -> None:
    # Real time (speedup 1): a flex request of 300 tokens runs for about two seconds.
    with serving(twin_app(catalog, speedup=1.0)) as twin:
        check_tiers(make_gateway([twin], policy="value", concurrency=2))


def check_tiers(gw: Gateway) -> None:
    key = gw.key()
    flex = [Stream("flex", 300) for _ in range(4)]
    threads = [threading.Thread(target=run, args=(gw, key, s)) for s in flex]
    for t in threads:
        t.start()
    # The replica is saturated: two flex running, two queued.
    wait_until(
        lambda: (
            gauge(gw, "tokenfactory_running", 'replica="twin-0"') == 2
            and gauge(gw, "tokenfactory_queue_depth", 'tier="flex"') == 2
        )
    )
    realtime = [Stream("priority", 20) for _ in range(3)]
    more = [threading.Thread(target=run, args=(gw, key, s)) for s in realtime]
    for t in more:
        t.start()
    for t in threads + more:
        t.join(timeout=120)
    streams = flex + realtime
    assert all(s.error is None for s in streams), [s.error for s in streams]

    # Realtime came in last but started before the queued flex requests did.
    queued_flex = sorted(s.ttft_s for s in flex if s.ttft_s)[2:]  # type: ignore[type-var]
    assert max(s.ttft_s for s in realtime) < min(queued_flex)  # type: ignore[type-var]

    events = {e.request_id: e for e in gw.ledger.events()}
    assert len(events) == len(streams) == len({s.id for s in streams})
    for s in streams:
        e = events[s.id]
        # Every token the client received is in the ledger, once; nothing more.
        assert e.output_tokens == s.chunks == s.max_tokens, (s.tier, e.output_tokens, s.chunks)
    paused = [events[s.id] for s in flex if events[s.id].preemptions > 0]
    assert paused, "no flex request was paused for the realtime ones"
    assert all(e.outcome == "preempted_resumed" for e in paused)
    assert all(events[s.id].outcome == "ok" for s in realtime)
