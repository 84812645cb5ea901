"""What the ledger stores and returns: usage events, key records, outcomes, money units.

Money crosses this API in two forms only: integers named `*_micros` (micro-dollars, what
the rows hold) and `Decimal` dollars (reports and `*_usd` arguments). Never float.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal

from tokenfactory.errors import BadInput, TokenfactoryError

MICROS_PER_USD = 1_000_000
_MICRO = Decimal("0.000001")


class LedgerError(TokenfactoryError):
    """The ledger could not do what was asked."""


class KeyNotFound(LedgerError):
    """No API key has that id."""

    status = 404
    type = "invalid_request_error"
    code = "not_found"


def usd_to_micros(usd: Decimal) -> int:
    """Dollars to integer micro-dollars; refuses amounts finer than a micro-dollar."""
    micros = usd * MICROS_PER_USD
    if micros != micros.to_integral_value():
        raise BadInput(f"{usd} USD is finer than a micro-dollar")
    return int(micros)


def micros_to_usd(micros: int) -> Decimal:
    """Integer micro-dollars to exact Decimal dollars (six decimal places)."""
    return Decimal(micros).scaleb(-6).quantize(_MICRO)


def round_usd(usd: Decimal) -> Decimal:
    """A derived dollar amount rounded (half-even) to the micro-dollar."""
    return usd.quantize(_MICRO, rounding=ROUND_HALF_EVEN)


class Outcome(enum.StrEnum):
    """How a request attempt ended."""

    OK = "ok"
    CLIENT_CANCELLED = "client_cancelled"
    PREEMPTED_RESUMED = "preempted_resumed"
    ENGINE_ERROR = "engine_error"
    REFUSED = "refused"
    ABANDONED = "abandoned"
    # The gateway died while the request ran; billed on restart for what its journal held.
    INTERRUPTED = "interrupted"


def require_utc(name: str, when: datetime | None) -> None:
    """Refuse naive datetimes: the ledger's clock is UTC and says so."""
    if when is not None and when.utcoffset() is None:
        raise BadInput(f"{name} must be timezone-aware (UTC), got {when!r}", param=name)


@dataclass(frozen=True, slots=True, kw_only=True)
class UsageEvent:
    """One request attempt: who, where, how many tokens, when, and the money."""

    request_id: str
    key_id: int
    model: str
    replica: str | None  # None when the request never reached a replica (refused)
    tier_requested: str
    tier_served: str  # billing uses this; for refused requests, the tier it would have had
    input_tokens: int
    output_tokens: int
    started_at: datetime
    ended_at: datetime
    outcome: Outcome
    cached_tokens: int = 0
    queued_s: float = 0.0
    ttft_s: float | None = None
    revenue_micros: int = 0
    cost_micros: int = 0
    work_s: float = 0.0
    preemptions: int = 0
    error: str | None = None

    def __post_init__(self) -> None:
        if not self.request_id:
            raise BadInput("request_id is empty", param="request_id")
        require_utc("started_at", self.started_at)
        require_utc("ended_at", self.ended_at)
        counts = (self.input_tokens, self.cached_tokens, self.output_tokens, self.preemptions)
        if min(counts) < 0 or self.cached_tokens > self.input_tokens:
            raise BadInput(f"impossible token counts in event {self.request_id!r}")
        if min(self.revenue_micros, self.cost_micros) < 0 or self.work_s < 0:
            raise BadInput(f"negative money or work in event {self.request_id!r}")
        Outcome(self.outcome)  # raises ValueError on an unknown outcome


@dataclass(frozen=True, slots=True, kw_only=True)
class KeyRecord:
    """An API key as stored, without its secret (only the hash is kept)."""

    id: int
    tenant_id: int
    tenant: str
    prefix: str  # the secret's first 8 characters, for display
    default_tier: str
    allowed_tiers: tuple[str, ...] | None  # None: every tier
    budget_micros: int | None  # None: unlimited
    spent_micros: int
    tokens_per_minute: int | None
    is_admin: bool
    created_at: datetime
    revoked_at: datetime | None

    @property
    def active(self) -> bool:
        """Whether the key may still be used."""
        return self.revoked_at is None

    @property
    def remaining_micros(self) -> int | None:
        """Budget left when this record was read; None when unlimited."""
        return None if self.budget_micros is None else self.budget_micros - self.spent_micros

    def allows(self, tier: str) -> bool:
        """Whether the key may ask for this tier."""
        return self.allowed_tiers is None or tier in self.allowed_tiers
