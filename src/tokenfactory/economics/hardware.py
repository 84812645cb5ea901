"""What the GPUs cost to hold and to power: owned or rented, per GPU-hour.

power(u) = idle + (peak - idle) x u per GPU, all-in (host share included), times PUE for
the facility. Owned hardware pays capital over its amortisation, energy and operations;
rented hardware pays the rent, which already includes power and operations.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from tokenfactory.economics.units import HOURS_PER_YEAR, dec


@dataclass(frozen=True, slots=True)
class Power:
    """A GPU's all-in power draw and the facility overhead on top of it."""

    peak_kw: float
    idle_fraction: float
    pue: float

    def it_kw(self, utilization: float) -> float:
        """IT power of one GPU (host share included) at a utilisation in [0, 1]."""
        idle = self.peak_kw * self.idle_fraction
        return idle + (self.peak_kw - idle) * utilization

    def facility_kw(self, utilization: float) -> float:
        """Power drawn from the grid for one GPU, cooling and losses included."""
        return self.it_kw(utilization) * self.pue


@dataclass(frozen=True, slots=True)
class Owned:
    """Bought hardware: capital amortised straight-line, plus energy and operations."""

    capex_per_gpu: Decimal
    amortisation_years: Decimal
    power: Power
    electricity_per_kwh: Decimal
    operations_per_gpu_hour: Decimal

    def capital_per_gpu_hour(self) -> Decimal:
        """Straight-line amortisation of the purchase price, per GPU-hour."""
        return self.capex_per_gpu / (self.amortisation_years * HOURS_PER_YEAR)

    def energy_per_gpu_hour(self, utilization: float) -> Decimal:
        """Electricity bought per GPU-hour at a utilisation."""
        return dec(self.power.facility_kw(utilization)) * self.electricity_per_kwh

    def cost_per_gpu_hour(self, utilization: float) -> Decimal:
        """Everything one GPU-hour costs the owner."""
        return (
            self.capital_per_gpu_hour()
            + self.energy_per_gpu_hour(utilization)
            + self.operations_per_gpu_hour
        )


@dataclass(frozen=True, slots=True)
class Rented:
    """Rented hardware: one all-in price per GPU-hour, whatever the load."""

    rent_per_gpu_hour: Decimal
    power: Power

    def cost_per_gpu_hour(self, utilization: float) -> Decimal:
        """The rent; power is the cloud's cost, not the renter's."""
        return self.rent_per_gpu_hour


Hardware = Owned | Rented
