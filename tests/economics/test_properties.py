"""Invariants of the production function, over many generated factories."""

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tokenfactory.economics import (
    Factory,
    OperatingPoint,
    Owned,
    Power,
    Prices,
    Rented,
    cost_per_million_tokens,
    evaluate,
    tokens_per_mw,
)

money = st.decimals(min_value="0.01", max_value="100", places=2)
rates = st.floats(min_value=1, max_value=50_000, allow_nan=False)
shares = st.floats(min_value=0.01, max_value=1.0)
power = st.builds(
    Power,
    peak_kw=st.floats(min_value=0.3, max_value=5),
    idle_fraction=st.floats(min_value=0, max_value=1),
    pue=st.floats(min_value=1, max_value=2),
)
hardware = st.one_of(
    st.builds(Rented, money, power),
    st.builds(
        Owned,
        st.decimals(min_value=1000, max_value=100_000, places=0),
        st.decimals(min_value=1, max_value=8, places=0),
        power,
        st.decimals(min_value=0, max_value="0.5", places=3),
        money,
    ),
)
points = st.builds(
    OperatingPoint,
    gpus=st.integers(min_value=1, max_value=1024),
    tokens_per_s_per_gpu=rates,
    utilization=shares,
    input_per_output=st.floats(min_value=0, max_value=20),
    cached_share=st.floats(min_value=0, max_value=1),
)
prices = st.builds(Prices, money, money, money)
factories = st.builds(Factory, hardware, points, prices)


@given(cost=money, low=rates, factor=st.floats(min_value=1.01, max_value=100))
def test_cost_per_token_falls_as_throughput_rises(cost: Decimal, low: float, factor: float) -> None:
    assert cost_per_million_tokens(cost, low * factor) < cost_per_million_tokens(cost, low)


@given(factories)
def test_profit_is_revenue_minus_cost_exactly(f: Factory) -> None:
    pnl = evaluate(f)
    assert pnl.revenue_per_hour is not None
    assert pnl.profit_per_hour == pnl.revenue_per_hour - pnl.cost_per_hour
    if pnl.margin is not None:
        assert pnl.margin <= 1


@given(factories)
def test_at_break_even_utilisation_profit_is_zero(f: Factory) -> None:
    u = evaluate(f).break_even_utilization
    if u is not None:
        profit = evaluate(f.at_utilization(u)).profit_per_hour
        assert profit is not None
        assert float(profit) == pytest.approx(0, abs=1e-6 * float(evaluate(f).cost_per_hour))


@given(factories, st.floats(min_value=1.01, max_value=10))
def test_revenue_scales_with_prices_and_cost_does_not(f: Factory, k: float) -> None:
    assert f.prices is not None
    ratio = Decimal(repr(k))
    scaled = evaluate(Factory(f.hardware, f.point, f.prices.scaled(ratio)))
    base = evaluate(f)
    assert scaled.cost_per_hour == base.cost_per_hour
    assert base.revenue_per_hour is not None and scaled.revenue_per_hour is not None
    assert scaled.revenue_per_hour == pytest.approx(base.revenue_per_hour * ratio)


@given(factories, shares)
def test_busier_is_never_cheaper_per_hour_and_never_dearer_per_token(f: Factory, u: float) -> None:
    lo, hi = sorted([f.point.utilization, u])
    a, b = evaluate(f.at_utilization(lo)), evaluate(f.at_utilization(hi))
    assert a.cost_per_hour <= b.cost_per_hour
    assert b.cost_per_million_tokens <= a.cost_per_million_tokens * Decimal("1.000001")


@given(points, power)
def test_joules_per_token_at_full_load_is_the_inverse_of_tokens_per_mw(
    point: OperatingPoint, p: Power
) -> None:
    f = Factory(Rented(Decimal(1), p), point).at_utilization(1.0)
    pnl = evaluate(f)
    # a MW is 1e6 J/s: at full load J/token = 1e6 / (tokens/s per MW)
    assert pnl.joules_per_token == pytest.approx(1e6 / pnl.tokens_per_mw)
    assert pnl.tokens_per_mw == pytest.approx(
        tokens_per_mw(point.tokens_per_s_per_gpu, p.facility_kw(1.0))
    )
