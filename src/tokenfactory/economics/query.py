"""Turn what a user asked (`tokenfactory cost` flags) into a Factory, filling the gaps.

Whatever the user leaves out comes from the catalog, and each filled value is reported
with its source, so nobody mistakes a default for a measurement.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from tokenfactory.catalog import Catalog, Energy, Gpu
from tokenfactory.economics.hardware import Hardware, Owned, Power, Rented
from tokenfactory.economics.pnl import Factory, OperatingPoint
from tokenfactory.economics.revenue import Prices
from tokenfactory.errors import BadInput

T = TypeVar("T")


class CostQuery(BaseModel):
    """The inputs of `tokenfactory cost`; None means 'take it from the catalog'."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    gpu: str
    gpus: int = Field(default=1, gt=0)
    tokens_per_s_per_gpu: float | None = Field(default=None, gt=0)
    tokens_per_s: float | None = Field(default=None, gt=0)
    utilization: float = Field(default=1.0, gt=0, le=1)
    rent_per_gpu_hour: Decimal | None = Field(default=None, gt=0)
    capex_per_gpu: Decimal | None = Field(default=None, gt=0)
    years: Decimal | None = Field(default=None, gt=0)
    pue: float | None = Field(default=None, ge=1)
    electricity_per_kwh: Decimal | None = Field(default=None, ge=0)
    kw_per_gpu: float | None = Field(default=None, gt=0)
    ops_per_gpu_hour: Decimal | None = Field(default=None, ge=0)
    model: str | None = None
    tier: str | None = None
    price_in: Decimal | None = Field(default=None, ge=0)
    price_cached_in: Decimal | None = Field(default=None, ge=0)
    price_out: Decimal | None = Field(default=None, ge=0)
    input_per_output: float | None = Field(default=None, ge=0)
    cached_share: float = Field(default=0.0, ge=0, le=1)

    @model_validator(mode="after")
    def _one_way_each(self) -> CostQuery:
        if (self.tokens_per_s_per_gpu is None) == (self.tokens_per_s is None):
            raise ValueError("give exactly one of --tokens-per-s-per-gpu and --tokens-per-s")
        owned = self.capex_per_gpu is not None or self.years is not None
        if owned and self.rent_per_gpu_hour is not None:
            raise ValueError("give --rent-per-gpu-hour or owned inputs (--capex-per-gpu, --years)")
        explicit = self.price_in is not None or self.price_out is not None
        if explicit and self.tier is not None:
            raise ValueError("give --tier or --price-in/--price-out, not both")
        if explicit and (self.price_in is None or self.price_out is None):
            raise ValueError("--price-in and --price-out go together")
        return self


@dataclass(frozen=True, slots=True)
class Filled:
    """An input the user did not give, the value used and where it came from."""

    name: str
    value: str
    source: str


def parse_query(**flags: object) -> CostQuery:
    """Validate the flags, naming the first bad one as the user typed it."""
    try:
        return CostQuery.model_validate(flags)
    except ValidationError as e:
        first = e.errors()[0]
        loc = first["loc"]
        flag = f"--{str(loc[0]).replace('_', '-')}" if loc else None
        message = first["msg"].removeprefix("Value error, ")
        raise BadInput(f"{flag}: {message}" if flag else message, param=flag) from None


class HardwareInputs(Protocol):
    """Cost inputs a user may give; None means 'from the catalog'."""

    @property
    def rent_per_gpu_hour(self) -> Decimal | None: ...
    @property
    def capex_per_gpu(self) -> Decimal | None: ...
    @property
    def years(self) -> Decimal | None: ...
    @property
    def pue(self) -> float | None: ...
    @property
    def electricity_per_kwh(self) -> Decimal | None: ...
    @property
    def kw_per_gpu(self) -> float | None: ...
    @property
    def ops_per_gpu_hour(self) -> Decimal | None: ...


class _Filler:
    """Takes a given value, or a default whose use it records with its source."""

    def __init__(self) -> None:
        self.filled: list[Filled] = []

    def __call__(self, name: str, given: T | None, default: T, source: str) -> T:
        if given is not None:
            return given
        self.filled.append(Filled(name, str(default), source))
        return default


def resolve_hardware(
    gpu: Gpu, energy: Energy, given: HardwareInputs, owned: bool
) -> tuple[Hardware, list[Filled]]:
    """Owned or rented hardware from the user's inputs, the catalog filling the gaps."""
    fill = _Filler()
    # The all-in figure includes the facility at the default PUE; its IT share stays
    # when the user names another PUE.
    all_in_kw = fill("kw_per_gpu", given.kw_per_gpu, gpu.kw_per_gpu, gpu.sources["power"])
    power = Power(
        peak_kw=all_in_kw / energy.pue,
        idle_fraction=fill(
            "idle_power_fraction",
            None,
            energy.idle_power_fraction,
            energy.sources["idle_power_fraction"],
        ),
        pue=fill("pue", given.pue, energy.pue, energy.sources["pue"]),
    )
    if not owned:
        rent = fill(
            "rent_per_gpu_hour", given.rent_per_gpu_hour, gpu.rent_per_gpu_hour, gpu.sources["rent"]
        )
        return Rented(rent, power), fill.filled
    hardware = Owned(
        capex_per_gpu=fill(
            "capex_per_gpu", given.capex_per_gpu, gpu.purchase_usd, gpu.sources["purchase"]
        ),
        amortisation_years=fill(
            "years",
            given.years,
            Decimal(str(energy.amortisation_years)),
            energy.sources["amortisation_years"],
        ),
        power=power,
        electricity_per_kwh=fill(
            "electricity_per_kwh",
            given.electricity_per_kwh,
            energy.electricity_per_kwh,
            energy.sources["electricity_per_kwh"],
        ),
        operations_per_gpu_hour=fill(
            "ops_per_gpu_hour",
            given.ops_per_gpu_hour,
            energy.operations_per_gpu_hour,
            energy.sources["operations_per_gpu_hour"],
        ),
    )
    return hardware, fill.filled


def resolve(query: CostQuery, catalog: Catalog) -> tuple[Factory, list[Filled]]:
    """The factory the query describes, and the inputs that were filled in."""
    energy = catalog.energy
    owned = query.capex_per_gpu is not None or query.years is not None
    hardware, filled = resolve_hardware(catalog.gpu(query.gpu), energy, query, owned)
    fill = _Filler()
    fill.filled = filled

    per_gpu = query.tokens_per_s_per_gpu or (query.tokens_per_s or 0) / query.gpus
    point = OperatingPoint(
        gpus=query.gpus,
        tokens_per_s_per_gpu=per_gpu,
        utilization=query.utilization,
        input_per_output=fill(
            "input_per_output",
            query.input_per_output,
            energy.input_per_output,
            energy.sources["input_per_output"],
        ),
        cached_share=query.cached_share,
    )
    return Factory(hardware, point, _prices(query, catalog, fill_tier=filled)), filled


def _prices(query: CostQuery, catalog: Catalog, fill_tier: list[Filled]) -> Prices | None:
    if query.price_in is not None and query.price_out is not None:
        cached = query.price_cached_in if query.price_cached_in is not None else query.price_in
        return Prices(query.price_in, cached, query.price_out)
    if query.model is None:
        if query.tier is not None:
            raise BadInput("--tier needs --model, whose list price it scales", param="--tier")
        return None
    model = catalog.model(query.model)
    if query.tier is None:
        fill_tier.append(Filled("tier", "standard", "list price of the model"))
    tier = catalog.tier(query.tier or "standard")
    return Prices.for_tier(model, tier)
