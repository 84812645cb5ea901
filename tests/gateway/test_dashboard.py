"""The dashboard's JSON: admin only, the ledger's numbers for its window, the floor live."""

from __future__ import annotations

import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from dashboard_helpers import drive_traffic, ledger_pnl, usd
from floor_helpers import ADMIN, MakeGateway, floors, twin_app
from servers import serving

from tokenfactory.catalog import Catalog
from tokenfactory.gateway.dashboard_data import service_levels
from tokenfactory.ledger.records import round_usd
from tokenfactory.ledger.series import Timing
from tokenfactory.sched import TierRule

ROUTE = "/v1/factory/dashboard"
ADMIN_HEADERS = {"Authorization": f"Bearer {ADMIN}"}


def test_the_json_needs_the_admin_key_and_refuses_bad_input_in_openais_shape(
    twin: str, make_gateway: MakeGateway
) -> None:
    gw = make_gateway([twin])
    tenant = gw.key("acme")
    cases: list[tuple[dict[str, str], dict[str, Any], int, str, str | None]] = [
        ({}, {}, 401, "invalid_api_key", None),
        ({"Authorization": f"Bearer {tenant}"}, {}, 403, "forbidden", None),
        (ADMIN_HEADERS, {"window": "15x"}, 400, "invalid_value", "window"),
        (ADMIN_HEADERS, {"window": "0m"}, 400, "invalid_value", "window"),
        (ADMIN_HEADERS, {"buckets": "0"}, 400, "invalid_value", "buckets"),
    ]
    for headers, params, status, code, param in cases:
        r = httpx.get(gw.url + ROUTE, headers=headers, params=params)
        assert r.status_code == status, (params, r.text)
        error = r.json()["error"]
        assert set(error) == {"message", "type", "param", "code"}
        assert (error["type"], error["code"], error["param"]) == (
            "invalid_request_error",
            code,
            param,
        ), error
        assert error["message"]
    # Nothing was lost: the admin key still gets the (empty) books.
    ok = httpx.get(gw.url + ROUTE, headers=ADMIN_HEADERS)
    assert ok.status_code == 200
    assert ok.json()["pnl"]["requests"]["total"] == 0


def test_admin_routes_take_the_factory_admin_key_and_keys_made_admin(
    twin: str, make_gateway: MakeGateway, run: Callable[..., Any], tmp_path: Path
) -> None:
    database = f"sqlite:///{tmp_path / 'admin.db'}"
    gw = make_gateway([twin], database=database)
    made = run("keys", "create", "--tenant", "ops", "--admin", "--database", database)
    assert made.code == 0, made.err
    ops = made.out.strip().splitlines()[-1]
    retired, retired_secret = gw.ledger.create_key("old-ops", is_admin=True)
    gw.ledger.revoke_key(retired.id)
    cases = [
        (ADMIN, 200),  # the factory file's admin_key
        (ops, 200),  # made with `keys create --admin`
        (gw.key("acme"), 403),  # a tenant's key
        (retired_secret, 403),  # an admin key, revoked
        ("tf-no-such-key", 403),
    ]
    for route in (ROUTE, "/v1/factory/pnl"):
        for secret, status in cases:
            r = httpx.get(gw.url + route, headers={"Authorization": f"Bearer {secret}"})
            assert r.status_code == status, (route, secret[:8], r.text)
            body = r.json()
            if status == 403:
                assert body["error"]["code"] == "forbidden"
                assert "admin key" in body["error"]["message"]
            else:  # the books, still empty
                assert (body["pnl"] if route == ROUTE else body)["requests"]["total"] == 0


def test_the_page_and_its_assets_come_from_the_gateway_alone(
    twin: str, make_gateway: MakeGateway
) -> None:
    gw = make_gateway([twin])
    page = httpx.get(gw.url + "/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert page.headers["content-security-policy"].startswith("default-src 'self'")
    assets = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert sorted(assets) == [
        "/dashboard/dashboard.css",
        "/dashboard/dashboard.js",
        "/dashboard/favicon.svg",
    ]
    for path in assets:
        asset = httpx.get(gw.url + path)
        assert asset.status_code == 200, path
        # No URL to anywhere else (the SVG namespace is a name, never fetched).
        assert re.findall(r"https?://", asset.text) in ([], ["http://"]), path


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_numbers_are_the_ledgers_for_the_same_window(
    twin: str, make_gateway: MakeGateway, backend: str, request: pytest.FixtureRequest
) -> None:
    database = request.getfixturevalue("pg_database") if backend == "postgresql" else None
    gw = make_gateway([twin, twin], concurrency=4, database=database)
    drive_traffic(gw)
    r = httpx.get(gw.url + ROUTE, headers=ADMIN_HEADERS, params={"window": "15m", "buckets": 30})
    assert r.status_code == 200, r.text
    data = r.json()
    pnl = ledger_pnl(gw, data["since"], data["until"])
    got = data["pnl"]
    for field in ("revenue_usd", "cost_usd", "idle_cost_usd", "profit_usd", "margin"):
        assert got[field] == usd(pnl[field]), field  # type: ignore[literal-required]
    assert got["cost_per_million_tokens"] == usd(pnl["cost_per_million_tokens"])
    assert got["tokens"] == pnl["tokens"] and pnl["tokens"]["output"] > 0
    assert pnl["cost_usd"] > 0 and pnl["revenue_usd"] > 0
    assert got["tokens_per_joule"] > 0
    assert set(got["per_tier"]) == set(pnl["per_tier"]) >= {"standard", "flex"}
    for tier, s in pnl["per_tier"].items():
        assert got["per_tier"][tier]["tokens"] == s["tokens"]
        assert got["per_tier"][tier]["revenue_usd"] == usd(s["revenue_usd"])

    # The series splits the same window: its buckets add up to the P&L.
    buckets = data["series"]["buckets"]
    assert len(buckets) == 30
    for tier, s in pnl["per_tier"].items():
        for kind in ("input", "output"):
            summed = sum(b["tokens"].get(tier, {}).get(kind, 0) for b in buckets)
            assert summed == s["tokens"][kind], (tier, kind)  # type: ignore[literal-required]
    assert sum(Decimal(b["revenue_usd"]) for b in buckets) == pnl["revenue_usd"]
    assert sum(Decimal(b["cost_usd"]) for b in buckets) == pnl["cost_usd"]

    # Service levels count attempts by the tier asked for, as the ledger has them.
    asked = Counter(e.tier_requested for e in gw.ledger.events())
    assert {t: s["requests"] for t, s in data["service"].items() if s["requests"]} == asked
    realtime = data["service"]["realtime"]
    assert realtime["ttft_objective_s"] == 0.45 and realtime["ttft_p99_s"] is not None
    assert 0 <= realtime["met"] <= realtime["requests"]
    assert data["service"]["flex"]["attainment"] is None  # best effort: no objective

    tenants = data["top_tenants"]
    assert {t["tenant"] for t in tenants} == {"acme", "beta"}
    assert [usd(pnl["per_tenant"][t["tenant"]]["revenue_usd"]) for t in tenants] == [
        t["revenue_usd"] for t in tenants
    ]
    assert Decimal(tenants[0]["revenue_usd"]) >= Decimal(tenants[1]["revenue_usd"])
    assert [r["name"] for r in data["floor"]["replicas"]] == ["twin-0", "twin-1"]
    assert data["floor"]["queued"] == 0 and data["batches"] == []

    # docs/dashboard.md lists exactly the fields the JSON has.
    doc = (Path(__file__).resolve().parents[2] / "docs" / "dashboard.md").read_text()
    table = doc.split("## The JSON")[1].split("How the numbers")[0]
    documented = {f for row in re.findall(r"^\| (`.+?) \|", table, re.M) for f in row.split(", ")}
    assert documented == {f"`{field}`" for field in data}

    # The same books as /v1/factory/pnl (which sends money as JSON numbers).
    plain = httpx.get(gw.url + "/v1/factory/pnl?window=15m", headers=ADMIN_HEADERS).json()
    assert float(got["revenue_usd"]) == plain["revenue_usd"]
    assert float(got["cost_usd"]) == plain["cost_usd"]
    assert got["tokens"] == plain["tokens"]


def test_the_floor_is_shown_as_it_is_now(catalog: Catalog, make_gateway: MakeGateway) -> None:
    # Real time: a flex request of 300 tokens holds its place for about two seconds.
    with serving(twin_app(catalog, speedup=1.0)) as twin:
        gw = make_gateway([twin], concurrency=2)
        key = gw.key("acme")
        errors: list[BaseException] = []

        def flex() -> None:
            client = openai.OpenAI(base_url=gw.v1, api_key=key, max_retries=0, timeout=120)
            try:
                client.chat.completions.create(
                    model="llama-3.1-8b",
                    messages=[{"role": "user", "content": "a long flex job"}],
                    max_tokens=300,
                    service_tier="flex",
                )
            except BaseException as e:  # reported below
                errors.append(e)

        threads = [threading.Thread(target=flex) for _ in range(4)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 30
        while True:
            floor = httpx.get(gw.url + ROUTE, headers=ADMIN_HEADERS).json()["floor"]
            replica = floor["replicas"][0]
            if replica["running"] == 2 and floor["queued_by_tier"]["flex"] == 2:
                break
            assert time.monotonic() < deadline, floor
            time.sleep(0.02)  # polling the gateway's own state, with a deadline
        assert replica == {
            "name": "twin-0",
            "running": 2,
            "max_concurrency": 2,
            "healthy": True,
            "engine_waiting": replica["engine_waiting"],
        }
        assert floor["queued_by_tier"] == {"realtime": 0, "standard": 0, "flex": 2, "batch": 0}
        for t in threads:
            t.join(timeout=120)
        assert not errors, errors


def test_attainment_counts_every_attempt_and_each_objective() -> None:
    realtime = TierRule(
        "realtime", 0, 2.0, ttft_s=0.5, tpot_s=0.05, patience_s=5, preemptible=False
    )
    flex = TierRule("flex", 2, 0.5, ttft_s=None, tpot_s=None, patience_s=900, preemptible=True)
    recent = [
        Timing("realtime", "ok", 10, ttft_s=0.2, tpot_s=0.01),  # met
        Timing("realtime", "preempted_resumed", 10, ttft_s=0.4, tpot_s=0.04),  # met
        Timing("realtime", "ok", 1, ttft_s=0.3, tpot_s=None),  # met: one token, no TPOT
        Timing("realtime", "ok", 10, ttft_s=0.6, tpot_s=0.01),  # TTFT missed
        Timing("realtime", "ok", 10, ttft_s=0.1, tpot_s=0.06),  # TPOT missed
        Timing("realtime", "refused", 0, ttft_s=None, tpot_s=None),  # never served: a miss
        Timing("realtime", "client_cancelled", 3, ttft_s=0.1, tpot_s=0.01),  # left: a miss
        Timing("flex", "ok", 10, ttft_s=30.0, tpot_s=1.0),
    ]
    levels = service_levels(recent, {"realtime": realtime, "flex": flex})
    assert list(levels) == ["realtime", "flex"]
    rt = levels["realtime"]
    assert (rt.requests, rt.served, rt.met, rt.attainment) == (7, 5, 3, 3 / 7)
    assert (rt.ttft_objective_s, rt.tpot_objective_s) == (0.5, 0.05)
    assert rt.ttft_p50_s == 0.3 and rt.ttft_p99_s == pytest.approx(
        0.4 + 0.96 * 0.2
    )  # numpy's linear p99 of 5
    assert rt.tpot_p50_s == pytest.approx(0.025)
    fx = levels["flex"]
    assert (fx.requests, fx.served, fx.met, fx.attainment) == (1, 1, None, None)
    assert fx.ttft_p99_s == 30.0


def test_a_window_longer_than_the_floor_has_run_counts_only_its_uptime(
    catalog: Catalog, make_gateway: MakeGateway
) -> None:
    # A real-time twin: its requests' work (model seconds) fits in the wall seconds the
    # idle cost counts, so the replicas have idle time to report.
    with serving(twin_app(catalog, speedup=1.0)) as twin:
        gw = make_gateway([twin, twin], concurrency=4)
        drive_traffic(gw)
    floor = floors[-1]
    events = gw.ledger.events()
    attributed = Counter[str]()
    for e in events:
        assert e.replica is not None
        attributed[e.replica] += e.cost_micros

    def idle_over(until: datetime) -> Decimal:
        """Each replica's rate times the floor's uptime, less what its requests were
        attributed, floored at zero: the idle cost of a window cut to the floor's start."""
        uptime = Decimal((until - floor.started_at) // timedelta(microseconds=1)).scaleb(-6)
        return sum(
            (
                max(round_usd(uptime * rate) - Decimal(attributed[name]).scaleb(-6), Decimal(0))
                for name, rate in floor.cost_rates().items()
            ),
            Decimal(0),
        )

    data = httpx.get(gw.url + ROUTE, headers=ADMIN_HEADERS, params={"window": "15m"}).json()
    started = floor.started_at.isoformat()
    assert data["since"] == data["started_at"] == data["series"]["since"] == started
    until = datetime.fromisoformat(data["until"])
    assert until - floor.started_at < timedelta(minutes=2)  # up a short while, not 15 minutes
    got = data["pnl"]
    assert Decimal(got["window"]["seconds"]) == Decimal(
        (until - floor.started_at) // timedelta(microseconds=1)
    ).scaleb(-6)
    assert Decimal(got["idle_cost_usd"]) == idle_over(until) > 0
    assert got["requests"]["total"] == len(events)
    revenue = sum(e.revenue_micros for e in events) - sum(attributed.values())
    assert Decimal(got["profit_usd"]) == Decimal(revenue).scaleb(-6) - idle_over(until)
    # The ledger over the whole 15 minutes would charge the replicas' time before the floor.
    uncut = gw.ledger.pnl(until - timedelta(minutes=15), until, floor.cost_rates())
    assert uncut["idle_cost_usd"] > Decimal(got["idle_cost_usd"]) * 5

    # /v1/factory/pnl cuts its window the same way (money as JSON numbers there).
    plain = httpx.get(gw.url + "/v1/factory/pnl?window=1h", headers=ADMIN_HEADERS).json()
    assert plain["window"]["since"] == started
    assert plain["idle_cost_usd"] == float(
        idle_over(datetime.fromisoformat(plain["window"]["until"]))
    )
