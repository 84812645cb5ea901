"""Every formula against values computed by hand (figures in the comments)."""

from decimal import Decimal

import pytest

from tokenfactory.economics import (
    Factory,
    OperatingPoint,
    Owned,
    Power,
    Prices,
    Rented,
    cost_per_million_tokens,
    evaluate,
    joules_per_token,
    revenue,
    run_scenarios,
    tokens_per_mw,
)

D = Decimal
H100_POWER = Power(peak_kw=1.73 / 1.3, idle_fraction=0.3, pue=1.3)


def test_inferencemax_cost_per_million_tokens() -> None:
    # $1.30/GPU-hr at 3,000 tok/s/GPU: 3000 * 3600 / 1e6 = 10.8 M tokens/h; 1.30 / 10.8
    assert cost_per_million_tokens(D("1.30"), 3000 * 3600) == pytest.approx(D("0.1203703704"))


def test_inferencemax_tokens_per_mw() -> None:
    # 3,000 tok/s/GPU at 1.73 kW/GPU: 3000 * 1000 / 1.73 = 1,734,104.05 tok/s per MW
    assert tokens_per_mw(3000, 1.73) == pytest.approx(1_734_104.046, rel=1e-9)


def test_joules_per_token() -> None:
    # 1.73 kW making 3,000 tok/s: 1730 J/s / 3000 tok/s = 0.5767 J/token
    assert joules_per_token(1.73, 3000) == pytest.approx(0.576667, rel=1e-5)


def test_power_at_utilisation() -> None:
    p = Power(peak_kw=1.0, idle_fraction=0.3, pue=1.5)
    assert p.it_kw(0.0) == pytest.approx(0.3)
    assert p.it_kw(0.5) == pytest.approx(0.65)  # 0.3 + 0.7 * 0.5
    assert p.facility_kw(1.0) == pytest.approx(1.5)


def test_owned_cost_per_gpu_hour() -> None:
    hw = Owned(D(25000), D(4), H100_POWER, D("0.08"), D("0.10"))
    # capital: 25000 / (4 * 8760) = 0.713470 $/h
    assert hw.capital_per_gpu_hour() == pytest.approx(D("0.7134703196"))
    # energy at full load: 1.73 kW all-in * 0.08 $/kWh = 0.1384 $/h
    assert hw.energy_per_gpu_hour(1.0) == pytest.approx(D("0.1384"))
    # at half load: 1.3308 * (0.3 + 0.35) * 1.3 = 1.1245 kW -> 0.08996 $/h
    assert hw.energy_per_gpu_hour(0.5) == pytest.approx(D("0.08996"), rel=D("1e-4"))
    assert hw.cost_per_gpu_hour(1.0) == pytest.approx(D("0.9518703196"))


def test_rented_cost_ignores_load() -> None:
    hw = Rented(D("2.10"), H100_POWER)
    assert hw.cost_per_gpu_hour(0.1) == hw.cost_per_gpu_hour(1.0) == D("2.10")


def test_revenue_by_kind_of_token() -> None:
    prices = Prices(input=D("0.50"), cached_input=D("0.25"), output=D("1.00"))
    # 1M input of which 0.2M cached, 0.5M output: 0.8*0.5 + 0.2*0.25 + 0.5*1.0 = 0.95
    assert revenue(prices, 1_000_000, 200_000, 500_000) == D("0.95")
    with pytest.raises(ValueError):
        revenue(prices, 10, 11, 0)


def test_tier_prices_scale_the_list_price(catalog) -> None:
    model, realtime = catalog.model("deepseek-v3"), catalog.tier("realtime")
    p = Prices.for_tier(model, realtime)
    assert (p.input, p.cached_input, p.output) == (D("0.54"), D("0.14"), D("2.2"))


def _factory(utilization: float = 1.0) -> Factory:
    return Factory(
        hardware=Rented(D("2.00"), Power(peak_kw=1.0, idle_fraction=0.3, pue=1.0)),
        point=OperatingPoint(
            gpus=8,
            tokens_per_s_per_gpu=1000,
            utilization=utilization,
            input_per_output=2.0,
            cached_share=0.5,
        ),
        prices=Prices(D("0.40"), D("0.10"), D("1.60")),
    )


def test_pnl_by_hand() -> None:
    pnl = evaluate(_factory(0.5))
    # output: 1000 * 8 * 0.5 * 3600 = 14.4M/h; input 28.8M of which 14.4M cached
    # revenue: 14.4*0.40 + 14.4*0.10 + 14.4*1.60 = 30.24 $/h; cost 8 * 2.00 = 16 $/h
    assert pnl.revenue_per_hour == D("30.24")
    assert pnl.cost_per_hour == D("16.00")
    assert pnl.profit_per_hour == D("14.24")
    assert pnl.margin == pytest.approx(D("14.24") / D("30.24"))
    assert pnl.cost_per_million_tokens == pytest.approx(D("16") / D("14.4"))
    # prices could fall to 16 / 30.24 of these and still break even
    assert pnl.break_even_price_ratio == pytest.approx(D("16") / D("30.24"))
    # rented: cost is fixed, revenue 60.48 u $/h at utilisation u: 16 / 60.48
    assert pnl.break_even_utilization == pytest.approx(16 / 60.48)
    # power: 8 GPUs at (0.3 + 0.7 * 0.5) kW; tokens/MW on the full-load all-in kW
    assert pnl.energy_kw == pytest.approx(5.2)
    assert pnl.tokens_per_mw == pytest.approx(1_000_000)


def test_owned_break_even_utilisation_accounts_for_energy_rising_with_load() -> None:
    hw = Owned(D(35040), D(4), Power(peak_kw=1.0, idle_fraction=0.5, pue=1.0), D("0.10"), D(0))
    f = Factory(
        hw,
        OperatingPoint(gpus=1, tokens_per_s_per_gpu=100, input_per_output=0),
        Prices(D(0), D(0), D("10")),
    )
    # capital 1.00 $/h; energy 0.05 + 0.05 u $/h; revenue 100*3600*10/1e6 = 3.6 u $/h
    # 1.05 + 0.05 u = 3.6 u  ->  u = 1.05 / 3.55
    assert evaluate(f).break_even_utilization == pytest.approx(1.05 / 3.55)


def test_never_breaks_even_when_prices_are_too_low() -> None:
    f = _factory()
    cheap = Factory(f.hardware, f.point, f.prices.scaled(D("0.01")))
    assert evaluate(cheap).break_even_utilization is None
    assert evaluate(cheap).profit_per_hour < 0


def test_no_prices_means_no_revenue() -> None:
    f = Factory(_factory().hardware, _factory().point, None)
    pnl = evaluate(f)
    assert pnl.revenue_per_hour is pnl.profit_per_hour is pnl.margin is None
    with pytest.raises(ValueError):
        run_scenarios(f)


def test_scenarios_move_one_input_and_sort_by_impact() -> None:
    base = evaluate(_factory(0.5)).profit_per_hour
    results = {r.name: r for r in run_scenarios(_factory(0.5))}
    # price -50% halves revenue: -15.12 $/h
    assert results["token price -50%"].change_per_hour == D("-15.12")
    # renters don't pay electricity directly
    assert results["electricity +30%"].change_per_hour == 0
    # rent +25%: -4 $/h
    assert results["hardware price +25%"].change_per_hour == D("-4.00")
    # doubling demand takes utilisation from 0.5 to 1: revenue doubles (+30.24)
    assert results["agents double demand (utilisation x2, at most 1)"].change_per_hour == D("30.24")
    for r in results.values():
        assert r.profit_per_hour - r.change_per_hour == base
    impacts = [abs(r.change_per_hour) for r in run_scenarios(_factory(0.5))]
    assert impacts == sorted(impacts, reverse=True)


def test_electricity_scenario_moves_an_owners_profit() -> None:
    f = _factory()
    owned = Factory(Owned(D(30000), D(4), f.hardware.power, D("0.10"), D(0)), f.point, f.prices)
    change = {r.name: r for r in run_scenarios(owned)}["electricity +30%"].change_per_hour
    # 8 GPUs * 1 kW * 0.10 $/kWh * 0.3 = 0.24 $/h more
    assert change == pytest.approx(D("-0.24"))
