"""The gateway as the official `openai` client sees it, over a twin engine."""

from __future__ import annotations

import json
import sys
from decimal import Decimal

import httpx
import openai
import pytest
from floor_helpers import ADMIN, MakeGateway

from tokenfactory.cli import main


def client(gw, key: str) -> openai.OpenAI:  # type: ignore[no-untyped-def]
    return openai.OpenAI(base_url=gw.v1, api_key=key, max_retries=0, timeout=60)


def test_chat_completion_is_served_metered_and_billed_at_the_tier(
    twin: str, make_gateway: MakeGateway
) -> None:
    gw = make_gateway([twin])
    c = client(gw, gw.key())
    reply = c.chat.completions.create(
        model="llama-3.1-8b",
        messages=[{"role": "user", "content": "Hello there, factory"}],
        max_tokens=12,
    )
    assert reply.choices[0].message.content
    assert reply.usage is not None and reply.usage.completion_tokens == 12
    assert reply.service_tier == "default"
    event = gw.ledger.event(reply.id)
    assert event is not None
    assert (event.output_tokens, event.input_tokens) == (12, reply.usage.prompt_tokens)
    assert event.tier_served == "standard" and event.outcome == "ok"
    # A dozen tokens on an H100 cost less than a micro-dollar: the work is there, the cost
    # rounds to 0 and stays in the replica's idle cost, so the total is exact.
    assert event.revenue_micros > 0 and event.work_s > 0 and event.replica == "twin-0"


def test_streaming_with_usage_and_priority_tier(twin: str, make_gateway: MakeGateway) -> None:
    gw = make_gateway([twin])
    c = client(gw, gw.key())
    chunks = list(
        c.chat.completions.create(
            model="llama-3.1-8b",
            messages=[{"role": "user", "content": "stream please"}],
            max_tokens=20,
            stream=True,
            stream_options={"include_usage": True},
            service_tier="priority",
        )
    )
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    usage = chunks[-1].usage
    assert text and usage is not None and usage.completion_tokens == 20
    assert chunks[-1].service_tier in ("priority", "default")  # realtime, or billed down
    event = gw.ledger.event(chunks[0].id)
    assert event is not None and event.tier_requested == "realtime"
    assert event.output_tokens == usage.completion_tokens


def test_completions_endpoint_and_models(twin: str, make_gateway: MakeGateway) -> None:
    gw = make_gateway([twin])
    c = client(gw, gw.key())
    done = c.completions.create(model="llama-3.1-8b", prompt="Once upon a time", max_tokens=5)
    assert done.choices[0].text and done.usage is not None and done.usage.completion_tokens == 5
    assert [m.id for m in c.models.list()] == ["llama-3.1-8b"]


def test_pnl_needs_the_admin_key_and_matches_the_ledger(
    twin: str, make_gateway: MakeGateway
) -> None:
    gw = make_gateway([twin])
    c = client(gw, gw.key())
    for _ in range(3):
        c.completions.create(model="llama-3.1-8b", prompt="count me", max_tokens=7)
    denied = httpx.get(gw.v1 + "/factory/pnl", headers={"Authorization": "Bearer nope"})
    assert denied.status_code == 403 and denied.json()["error"]["code"] == "forbidden"
    pnl = httpx.get(gw.v1 + "/factory/pnl?window=1h", headers={"Authorization": f"Bearer {ADMIN}"})
    assert pnl.status_code == 200
    body = pnl.json()
    assert body["tokens"]["output"] == 21
    events = gw.ledger.events()
    assert body["revenue_usd"] == pytest.approx(sum(e.revenue_micros for e in events) / 1e6)
    assert body["per_replica"]["twin-0"]["tokens"]["output"] == 21
    # Energy: the H100's grid power over the window, idle most of it; tokens per joule.
    assert 0 < body["energy_kwh"] < 1.73 * body["window"]["seconds"] / 3600
    assert body["tokens_per_joule"] == pytest.approx(21 / (body["energy_kwh"] * 3.6e6))
    metrics = httpx.get(gw.url + "/metrics").text
    assert 'gen_ai_client_token_usage_total{kind="output",tier="standard"} 21.0' in metrics


def test_report_command_prints_the_books_as_json(
    twin: str,
    make_gateway: MakeGateway,
    tmp_path,
    monkeypatch,
    capsys,  # type: ignore[no-untyped-def]
) -> None:
    database = f"sqlite:///{tmp_path / 'books.db'}"
    gw = make_gateway([twin], database=database)
    c = client(gw, gw.key("acme"))
    c.completions.create(model="llama-3.1-8b", prompt="for the books", max_tokens=6)
    report = json.loads(report_command(tmp_path, database, monkeypatch, capsys, "--json"))
    for field in (
        "tokens",
        "revenue_usd",
        "cost_usd",
        "idle_cost_usd",
        "profit_usd",
        "per_tier",
        "per_tenant",
        "per_replica",
        "tokens_per_joule",
    ):
        assert field in report
    assert report["tokens"]["output"] == 6 and list(report["per_tenant"]) == ["acme"]


def test_report_command_prints_the_ledgers_exact_micro_dollars(
    twin: str,
    make_gateway: MakeGateway,
    tmp_path,
    monkeypatch,
    capsys,  # type: ignore[no-untyped-def]
) -> None:
    """A few short requests earn fractions of a cent: the text report shows the ledger's
    exact amounts (to the micro-dollar), not zeros rounded away."""
    database = f"sqlite:///{tmp_path / 'books.db'}"
    gw = make_gateway([twin], database=database)
    c = client(gw, gw.key("acme"))
    c.completions.create(model="llama-3.1-8b", prompt="a tiny sale", max_tokens=3)
    revenue = sum(e.revenue_micros for e in gw.ledger.events())
    assert 0 < revenue < 100  # under a hundredth of a cent: four places would print 0.0000
    out = report_command(tmp_path, database, monkeypatch, capsys)
    assert f"revenue ${Decimal(revenue) / 1_000_000:.6f}" in out


def report_command(tmp_path, database: str, monkeypatch, capsys, *flags: str) -> str:  # type: ignore[no-untyped-def]
    """What `tokenfactory report` prints for the ledger of the gateway made in tmp_path."""
    factory = tmp_path / "factory-0.toml"  # the file the gateway was built from
    argv = ["tokenfactory", "report", *flags, "--config", str(factory), "--database", database]
    monkeypatch.setattr(sys, "argv", argv)
    main()
    out: str = capsys.readouterr().out
    return out
