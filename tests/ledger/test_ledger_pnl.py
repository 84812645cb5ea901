"""P&L figures against sums worked out by hand."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from tokenfactory.errors import BadInput
from tokenfactory.ledger import Ledger, Outcome, UsageEvent

MakeEvent = Callable[..., UsageEvent]
T0 = datetime(2026, 1, 1, tzinfo=UTC)
RATES = {"r1": Decimal("0.001"), "r2": Decimal("0.0005"), "r3": Decimal("0.0002")}
UNTIL = T0 + timedelta(seconds=100)


def at(seconds: float) -> dict[str, object]:
    """Times of an event that ran for one second and ended `seconds` after T0."""
    return {
        "started_at": T0 + timedelta(seconds=seconds - 1),
        "ended_at": T0 + timedelta(seconds=seconds),
    }


@pytest.fixture
def books(ledger: Ledger, make_event: MakeEvent) -> Ledger:
    acme, _ = ledger.create_key("acme")
    beta, _ = ledger.create_key("beta")
    events = [
        make_event(
            "e1", acme.id, input_tokens=1000, cached_tokens=200, output_tokens=500,
            revenue_micros=100_000, cost_micros=20_000, work_s=1.25, **at(10),
        ),
        make_event(
            "e2", acme.id, tier_requested="realtime", tier_served="realtime",
            input_tokens=2000, output_tokens=1000, revenue_micros=100_000,
            cost_micros=30_000, work_s=2.5, **at(20),
        ),
        make_event(
            "e3", beta.id, replica="r2", tier_requested="flex", tier_served="flex",
            input_tokens=500, output_tokens=300, revenue_micros=100_000, cost_micros=10_000,
            outcome=Outcome.PREEMPTED_RESUMED, preemptions=2, **at(30),
        ),
        make_event(
            "e4", beta.id, replica=None, tier_requested="flex", tier_served="flex",
            input_tokens=400, output_tokens=0, revenue_micros=0, cost_micros=0, work_s=0.0,
            outcome=Outcome.REFUSED, **at(40),
        ),
        make_event(
            "e5", acme.id, replica="r2", input_tokens=800, output_tokens=0,
            revenue_micros=0, cost_micros=5_000, outcome=Outcome.ABANDONED, **at(50),
        ),
        # Outside [T0, UNTIL): ended exactly at UNTIL, and before T0.
        make_event("late", acme.id, revenue_micros=999_000, **at(100)),
        make_event("early", acme.id, revenue_micros=999_000, **at(-1)),
    ]  # fmt: skip
    for event in events:
        assert ledger.record(event)
    return ledger


def usd(text: str) -> Decimal:
    return Decimal(text)


def test_totals(books: Ledger) -> None:
    report = books.pnl(T0, UNTIL, RATES)
    assert report["window"]["seconds"] == 100
    assert report["tokens"] == {"input": 4700, "cached": 200, "output": 1800}
    assert report["requests"]["total"] == 5
    assert report["requests"]["by_outcome"] == {
        "ok": 2,
        "client_cancelled": 0,
        "preempted_resumed": 1,
        "engine_error": 0,
        "refused": 1,
        "abandoned": 1,
        "interrupted": 0,
    }
    assert report["revenue_usd"] == usd("0.3")  # three times $0.1, exactly
    assert report["cost_usd"] == usd("0.065")
    # r1: 100 s x $0.001 - $0.05; r2: 100 s x $0.0005 - $0.015; r3: idle throughout.
    assert report["idle_cost_usd"] == usd("0.05") + usd("0.035") + usd("0.02")
    assert report["profit_usd"] == usd("0.13")
    assert report["margin"] == usd("0.433333")
    assert report["cost_per_million_tokens"] == usd("94.444444")  # $0.17 / 1800 x 1e6
    assert all(isinstance(v, Decimal) for k, v in report.items() if k.endswith("_usd"))


def test_per_tier_and_tenant(books: Ledger) -> None:
    report = books.pnl(T0, UNTIL, RATES)
    tiers = report["per_tier"]
    assert set(tiers) == {"standard", "realtime", "flex"}
    assert tiers["standard"]["tokens"] == {"input": 1800, "cached": 200, "output": 500}
    assert tiers["standard"]["requests"] == 2
    assert tiers["standard"]["profit_usd"] == usd("0.075")
    assert (tiers["realtime"]["revenue_usd"], tiers["realtime"]["cost_usd"]) == (
        usd("0.1"),
        usd("0.03"),
    )
    assert tiers["flex"]["tokens"] == {"input": 900, "cached": 0, "output": 300}
    assert tiers["flex"]["profit_usd"] == usd("0.09")
    tenants = report["per_tenant"]
    assert tenants["acme"]["tokens"] == {"input": 3800, "cached": 200, "output": 1500}
    assert (tenants["acme"]["requests"], tenants["acme"]["profit_usd"]) == (3, usd("0.145"))
    assert (tenants["beta"]["requests"], tenants["beta"]["revenue_usd"]) == (2, usd("0.1"))


def test_per_replica_and_idle_cost(books: Ledger) -> None:
    replicas = books.pnl(T0, UNTIL, RATES)["per_replica"]
    assert list(replicas) == ["r1", "r2", "r3"]  # never-dispatched requests belong to none
    r1, r2, r3 = replicas["r1"], replicas["r2"], replicas["r3"]
    assert (r1["requests"], r1["busy_s"], r1["cost_per_s"]) == (2, 3.75, usd("0.001"))
    assert (r1["cost_usd"], r1["idle_cost_usd"], r1["profit_usd"]) == (
        usd("0.05"),
        usd("0.05"),
        usd("0.1"),
    )
    assert (r2["idle_cost_usd"], r2["profit_usd"]) == (usd("0.035"), usd("0.05"))
    assert (r3["requests"], r3["idle_cost_usd"], r3["profit_usd"]) == (0, usd("0.02"), -usd("0.02"))


def test_idle_cost_is_never_negative_and_needs_a_rate(books: Ledger) -> None:
    # A 10 s window holds only e1: r1 costs $0.01 over it, but e1 was attributed $0.02.
    report = books.pnl(T0, T0 + timedelta(seconds=10, microseconds=1), {"r1": RATES["r1"]})
    assert report["per_replica"]["r1"]["idle_cost_usd"] == 0
    assert report["idle_cost_usd"] == 0
    unpriced = books.pnl(T0, UNTIL, {})
    assert unpriced["idle_cost_usd"] == 0 and unpriced["per_replica"]["r2"]["cost_per_s"] is None


def test_default_window_and_bad_arguments(books: Ledger) -> None:
    report = books.pnl(until=UNTIL, replica_cost_per_s={})
    assert report["window"]["since"] == T0 - timedelta(seconds=2)  # the first event's start
    assert report["requests"]["total"] == 6
    with pytest.raises(BadInput):
        books.pnl(T0.replace(tzinfo=None), UNTIL, {})
    with pytest.raises(BadInput):
        books.pnl(T0, UNTIL, {"r1": 0.001})  # type: ignore[dict-item]


def test_empty_ledger(ledger: Ledger) -> None:
    report = ledger.pnl(T0, UNTIL, {"r1": Decimal("0.001")})
    assert report["tokens"] == {"input": 0, "cached": 0, "output": 0}
    assert report["revenue_usd"] == 0 and report["idle_cost_usd"] == usd("0.1")
    assert report["margin"] is None and report["cost_per_million_tokens"] is None
    assert report["per_tier"] == {} and report["per_tenant"] == {}
    assert ledger.pnl(replica_cost_per_s={})["window"]["seconds"] == 0
