"""The dashboard in real headless Chromium: the key entered once, then charts and numbers
that are the ledger's for the window the page shows. Saves a screenshot as an artifact."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import openai
import pytest
from batch_helpers import ended, jsonl, submit, wait_for
from batch_helpers import line as batch_line
from dashboard_helpers import busy_traffic, drive_traffic, ledger_pnl, usd
from floor_helpers import ADMIN, Gateway, MakeGateway, floors, twin_app
from playwright.sync_api import Browser, Page, sync_playwright
from servers import serving
from sqlalchemy.orm import Session

from tokenfactory.catalog import Catalog
from tokenfactory.gateway.runtime import with_energy
from tokenfactory.ledger.batches import BatchBook
from tokenfactory.ledger.series import series

CHROMIUM = Path("/usr/bin/chromium")  # Debian's; scripts/browser.sh installs it
ARTIFACTS = Path(__file__).resolve().parents[2] / "out" / "artifacts"
BUCKETS = 60  # what the page asks for
TENANTS = ("acme", "beta", "gamma", "delta")

# Everything the page shows, read in one go (the page re-renders between separate reads).
READ_PAGE = """() => {
  const info = document.getElementById("window-info").dataset;
  const kpi = {};
  for (const node of document.querySelectorAll(".kpi span[id]")) kpi[node.id] = node.dataset.value;
  const chart = (id) => ({
    series: Number(document.getElementById(id).dataset.series),
    paths: [...document.querySelectorAll(`#${id} path`)].map((p) => ({ ...p.dataset })),
  });
  const rows = (id) =>
    [...document.querySelectorAll(`#${id} tbody tr`)].map((r) => ({ ...r.dataset }));
  return {
    since: info.since, until: info.until, cut: info.cut,
    windowText: document.getElementById("window-info").textContent, kpi,
    tokens: chart("chart-tokens"), money: chart("chart-money"), margin: chart("chart-margin"),
    tiers: rows("tiers"), tenants: rows("tenants"), replicas: rows("replicas"),
    queue: rows("queue"), service: rows("service"), batches: rows("batches"),
    noBatches: !document.getElementById("no-batches").hidden,
  };
}"""


@pytest.fixture
def browser() -> Iterator[Browser]:
    assert CHROMIUM.exists(), f"{CHROMIUM} is missing: run scripts/browser.sh"
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        yield b
        b.close()


def test_the_dashboard_shows_the_ledgers_books_live(
    catalog: Catalog, make_gateway: MakeGateway, browser: Browser
) -> None:
    # A factory worth a screenshot: an H100 twin in real time (so a wall second is a GPU
    # second, as the idle cost counts it) at the catalog's price, kept busy by four tenants
    # asking again and again for realtime, standard and flex answers of 200 to 1000 tokens.
    with serving(twin_app(catalog, speedup=1.0)) as twin:
        gw = make_gateway([twin], concurrency=48)
        drive_traffic(gw, busy_traffic(TENANTS, per_tier=3), rounds=2)
        # And a batch through the Batch API: three answers and a line too long to run.
        client = openai.OpenAI(base_url=gw.v1, api_key=gw.key("gamma"), max_retries=0)
        lines = [batch_line(f"q{i}", "llama-3.1-8b", 100 + 50 * i) for i in range(3)]
        lines.append(batch_line("too-long", "llama-3.1-8b", 10_000_000))
        batch = submit(client, jsonl(lines))
        assert wait_for(client, batch.id, ended).status == "completed"
        look_at_the_books(gw, browser, {batch.id: "gamma"})


def look_at_the_books(gw: Gateway, browser: Browser, batches: dict[str, str]) -> None:
    """Open the page, key in, check every number against the ledger, save the screenshot."""
    page = browser.new_page(viewport={"width": 1440, "height": 1100})
    fetched: list[str] = []
    page.on("request", lambda request: fetched.append(request.url))
    broken: list[str] = []
    page.on("pageerror", lambda error: broken.append(str(error)))
    page.on("console", lambda m: broken.append(m.text) if m.type == "error" else None)
    page.goto(gw.url + "/?every=1")

    # Locked until the admin key is given; a wrong key is refused and not kept.
    assert page.get_attribute("body", "data-state") == "locked"
    page.fill("#key", gw.key("acme"))
    page.click("#key-save")
    page.wait_for_function("() => document.getElementById('error').textContent.includes('admin')")
    assert page.get_attribute("body", "data-state") == "locked"
    enter_admin_key(page)

    shown = page.evaluate(READ_PAGE)
    check_books(gw, shown, batches)
    # The 15-minute window is cut to the gateway's start, and the page says so.
    assert shown["since"] == floors[-1].started_at.isoformat() and shown["cut"] == "true"
    assert "gateway start" in shown["windowText"] and "of the 15m asked" in shown["windowText"]

    # Entered once: a reload goes straight to the board, and keeps polling.
    first = page.get_attribute("body", "data-updated")
    page.reload()
    page.wait_for_function("() => document.body.dataset.state === 'live'")
    page.wait_for_function(f"() => document.body.dataset.updated > {first!r}")
    check_books(gw, page.evaluate(READ_PAGE), batches)

    print(f"dashboard screenshot: {shot(page, 'dashboard.png')}")

    # Nothing came from anywhere but the gateway, and the page's script never failed (the
    # one error logged is the wrong key's 403).
    assert fetched and all(url.startswith(gw.url + "/") for url in fetched), fetched
    assert [e for e in broken if "403" not in e] == [], broken

    page.click("#forget")
    assert page.get_attribute("body", "data-state") == "locked"
    page.reload()
    assert page.is_visible("#key")


def test_the_page_follows_the_floor_as_it_fills_and_drains(
    catalog: Catalog, make_gateway: MakeGateway, browser: Browser
) -> None:
    # Real time: a flex request of 300 tokens holds its place for about two seconds.
    with serving(twin_app(catalog, speedup=1.0)) as twin:
        gw = make_gateway([twin], concurrency=2)
        key = gw.key("acme")
        page = browser.new_page(viewport={"width": 1440, "height": 1100})
        page.goto(gw.url + "/?every=0.5")
        enter_admin_key(page)
        assert page.get_attribute("#replicas tr[data-replica='twin-0']", "data-running") == "0"

        failures: list[BaseException] = []

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
                failures.append(e)

        threads = [threading.Thread(target=flex) for _ in range(4)]
        for t in threads:
            t.start()
        # Full: the replica runs two, two wait; the page shows it without a reload.
        page.wait_for_function(
            """() => document.querySelector("#replicas tr[data-replica='twin-0']")
                       .dataset.running === "2"
                  && document.querySelector("#queue tr[data-tier='flex']").dataset.queued === "2"
            """,
            timeout=30_000,
        )
        print(f"dashboard screenshot, busy floor: {shot(page, 'dashboard-busy.png')}")
        for t in threads:
            t.join(timeout=120)
        assert not failures, failures
        # Drained: idle again, and the four requests are in the books the page shows.
        page.wait_for_function(
            """() => document.getElementById("requests").dataset.value === "4"
                  && document.querySelector("#replicas tr[data-replica='twin-0']")
                       .dataset.running === "0"
            """,
            timeout=30_000,
        )
        assert page.get_attribute("#tokens-output", "data-value") == str(4 * 300)


def shot(page: Page, name: str) -> Path:
    """Save a full-page screenshot under out/artifacts; returns its path."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 20_000  # a rendered board, not a blank page
    return path


def enter_admin_key(page: Page) -> None:
    """Give the page the admin key and wait for its first rendering."""
    page.fill("#key", ADMIN)
    page.click("#key-save")
    page.wait_for_function("() => document.body.dataset.state === 'live'")


def check_books(gw: Gateway, shown: dict[str, Any], batches: dict[str, str]) -> None:
    """Every number and chart on the page against the ledger for the page's window;
    `batches`: the batch ids sent, and their tenants."""
    pnl = ledger_pnl(gw, shown["since"], shown["until"])
    kpi = shown["kpi"]
    assert kpi["revenue"] == usd(pnl["revenue_usd"]) and pnl["revenue_usd"] > 0
    assert kpi["cost"] == usd(pnl["cost_usd"]) and pnl["cost_usd"] > 0
    assert kpi["idle-cost"] == usd(pnl["idle_cost_usd"])
    assert kpi["profit"] == usd(pnl["profit_usd"])
    assert kpi["margin"] == usd(pnl["margin"])
    assert kpi["cost-per-million"] == usd(pnl["cost_per_million_tokens"])
    assert int(kpi["tokens-input"]) == pnl["tokens"]["input"]
    assert int(kpi["tokens-output"]) == pnl["tokens"]["output"] > 0
    assert int(kpi["requests"]) == pnl["requests"]["total"]
    energy = with_energy(pnl, floors[-1].costs)
    assert float(kpi["tokens-per-joule"]) == energy["tokens_per_joule"]

    tiers = {row["tier"]: row for row in shown["tiers"]}
    assert set(tiers) == set(pnl["per_tier"]) >= {"standard", "flex"}
    for tier, s in pnl["per_tier"].items():
        row = tiers[tier]
        assert int(row["input"]) == s["tokens"]["input"]
        assert int(row["output"]) == s["tokens"]["output"]
        assert row["revenue"] == usd(s["revenue_usd"])
    assert {row["tenant"]: row["revenue"] for row in shown["tenants"]} == {
        name: usd(s["revenue_usd"]) for name, s in pnl["per_tenant"].items()
    }

    # Tokens per second: an output and an input line per tier served, one point a bucket,
    # adding up to the tier's tokens.
    lines = {p["series"]: p for p in shown["tokens"]["paths"]}
    assert shown["tokens"]["series"] == len(lines) == 2 * len(pnl["per_tier"])
    for tier, s in pnl["per_tier"].items():
        for kind in ("input", "output"):
            line = lines[f"{tier} {kind}"]
            assert int(line["points"]) == BUCKETS
            assert int(line["sum"]) == s["tokens"][kind]  # type: ignore[literal-required]

    # Money: revenue, cost (attributed + idle) and profit per bucket, summed exactly.
    since, until = (datetime.fromisoformat(shown[k]) for k in ("since", "until"))
    with Session(gw.ledger.engine) as session:
        buckets = series(session, since, until, BUCKETS, floors[-1].cost_rates())["buckets"]
    money = {p["series"]: p for p in shown["money"]["paths"]}
    assert sorted(money) == ["cost", "profit", "revenue"]
    assert all(int(p["points"]) == BUCKETS for p in money.values())
    assert micros(money["revenue"]["sum"]) == pnl["revenue_usd"]
    spent = sum((b["cost_usd"] + b["idle_cost_usd"] for b in buckets), Decimal(0))
    assert micros(money["cost"]["sum"]) == spent
    assert micros(money["profit"]["sum"]) == pnl["revenue_usd"] - spent
    assert shown["margin"]["series"] == 1

    # The floor: every replica, healthy, idle now; every tier's queue, empty.
    assert [(r["replica"], r["healthy"], r["running"]) for r in shown["replicas"]] == [
        (r.name, "true", "0") for r in floors[-1].dispatcher.replicas
    ]
    assert {r["tier"]: r["queued"] for r in shown["queue"]} == dict.fromkeys(
        ("realtime", "standard", "flex", "batch"), "0"
    )
    asked = Counter(e.tier_requested for e in gw.ledger.events())
    service = {r["tier"]: int(r["requests"]) for r in shown["service"] if r["requests"] != "0"}
    assert service == asked
    # The batch queue: each batch sent, its tenant and its lines as the batch book has them.
    assert [row["batch"] for row in shown["batches"]] == list(batches) and not shown["noBatches"]
    book = BatchBook(gw.ledger)
    for row in shown["batches"]:
        stored = book.batch(row["batch"])
        assert stored is not None and stored.counts.total > stored.counts.completed > 0
        c = stored.counts
        assert (row["tenant"], row["status"]) == (batches[row["batch"]], stored.status)
        assert (row["total"], row["completed"], row["failed"]) == tuple(
            str(n) for n in (c.total, c.completed, c.failed)
        )


def micros(sum_micros: str) -> Decimal:
    """A chart's exact sum (integer micro-dollars) in dollars."""
    return Decimal(int(sum_micros)).scaleb(-6)
