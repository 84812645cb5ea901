"""The P&L's exact windows: `since` / `until` as unix seconds or ISO 8601, validated,
cut to the floor's start and to now."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import httpx
import openai
from floor_helpers import ADMIN, MakeGateway, floors, twin_app
from servers import serving

from tokenfactory.catalog import Catalog
from tokenfactory.ledger.records import round_usd

PNL = "/v1/factory/pnl"
HEADERS = {"Authorization": f"Bearer {ADMIN}"}


def test_bad_windows_are_refused_in_openais_shape_and_lose_nothing(
    twin: str, make_gateway: MakeGateway
) -> None:
    gw = make_gateway([twin])
    started = floors[-1].started_at
    before = (started - timedelta(hours=2)).isoformat()
    soon = datetime.now(UTC) + timedelta(hours=1)
    cases: list[tuple[dict[str, str], str, str]] = [
        ({"since": "yesterday"}, "since", "unix seconds"),
        ({"since": "2026-01-01T00:00:00"}, "since", "no time zone"),
        ({"until": "1e9"}, "until", "unix seconds"),  # no exponents: digits and a point
        ({"since": "99999999999999"}, "since", "too far in the future"),
        ({"since": "1767225600", "until": "1767225600"}, "until", "must be after since"),
        ({"since": "1767225600", "until": "1767225599.5"}, "until", "must be after since"),
        ({"window": "1h", "since": "1767225600"}, "window", "either window or since"),
        ({"window": "0m"}, "window", "15m, 1h or 7d"),
        ({"window": ""}, "window", "15m, 1h or 7d"),
        # Entirely before the gateway started, or entirely in the future: nothing to report.
        ({"since": before, "until": (started - timedelta(hours=1)).isoformat()}, "since", "empty"),
        ({"since": str(soon.timestamp())}, "since", "empty"),
    ]
    for route in (PNL, "/v1/factory/dashboard"):
        for params, param, says in cases:
            r = httpx.get(gw.url + route, headers=HEADERS, params=params)
            assert r.status_code == 400, (route, params, r.text)
            error = r.json()["error"]
            assert set(error) == {"message", "type", "param", "code"}
            assert (error["type"], error["code"]) == ("invalid_request_error", "invalid_value")
            assert error["param"] == param and says in error["message"], (params, error)
    assert httpx.get(gw.url + PNL, headers=HEADERS).status_code == 200  # still serving


def test_an_exact_window_holds_exactly_its_requests_and_its_idle_time(
    catalog: Catalog, make_gateway: MakeGateway
) -> None:
    # One real-time replica answering six requests one after another: each pays its own
    # steps, and the gaps between them are idle time the window's idle cost must show.
    with serving(twin_app(catalog, speedup=1.0)) as twin:
        gw = make_gateway([twin])
        client = openai.OpenAI(base_url=gw.v1, api_key=gw.key(), max_retries=0, timeout=60)
        for i in range(6):
            client.chat.completions.create(
                model="llama-3.1-8b",
                messages=[{"role": "user", "content": f"question {i}"}],
                max_tokens=30,
            )
    floor = floors[-1]
    events = sorted(gw.ledger.events(), key=lambda e: e.ended_at)
    # From just after the third request ended to just after the sixth: those three.
    tick = timedelta(microseconds=1)
    since, until = events[2].ended_at + tick, events[5].ended_at + tick
    inside = events[3:6]
    rates = floor.cost_rates()

    def check(body: dict[str, Any]) -> None:
        window = body["window"]
        assert datetime.fromisoformat(window["since"]) == since
        assert datetime.fromisoformat(window["until"]) == until
        seconds = Decimal((until - since) // timedelta(microseconds=1)).scaleb(-6)
        assert Decimal(str(window["seconds"])) == seconds
        assert body["requests"]["total"] == 3
        assert body["tokens"]["output"] == sum(e.output_tokens for e in inside)
        attributed = Counter[str]()
        for e in inside:
            assert e.replica is not None
            attributed[e.replica] += e.cost_micros
        idle = sum(
            (
                max(round_usd(seconds * rate) - Decimal(attributed[name]).scaleb(-6), Decimal(0))
                for name, rate in rates.items()
            ),
            Decimal(0),
        )
        assert Decimal(str(body["idle_cost_usd"])) == idle > 0

    # Unix seconds (to the microsecond) and ISO 8601, with any offset, name the same window.
    as_unix = {"since": f"{since.timestamp():.6f}", "until": f"{until.timestamp():.6f}"}
    east = since.astimezone(timezone(timedelta(hours=5, minutes=30)))
    as_iso = {"since": east.isoformat(), "until": until.isoformat().replace("+00:00", "Z")}
    for params in (as_unix, as_iso):
        r = httpx.get(gw.url + PNL, headers=HEADERS, params=params)
        assert r.status_code == 200, r.text
        check(r.json())
    # The dashboard takes the same window.
    board = httpx.get(gw.url + "/v1/factory/dashboard", headers=HEADERS, params=as_iso).json()
    assert board["pnl"]["requests"]["total"] == 3 and board["window"] is None

    # Cut to the floor's start and to now: a day before the gateway to an hour from now.
    day = (floor.started_at - timedelta(days=1)).isoformat()
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    asked_at = datetime.now(UTC)
    body = httpx.get(gw.url + PNL, headers=HEADERS, params={"since": day, "until": later}).json()
    assert datetime.fromisoformat(body["window"]["since"]) == floor.started_at
    assert asked_at <= datetime.fromisoformat(body["window"]["until"]) <= datetime.now(UTC)
    assert body["requests"]["total"] == len(events)
