"""Key helpers: secrets, their stored hash, argument checks, rows to records."""

from __future__ import annotations

import hashlib
import secrets
from decimal import Decimal

from sqlalchemy import select

from tokenfactory.errors import BadInput
from tokenfactory.ledger.records import KeyRecord
from tokenfactory.ledger.schema import ApiKey, Tenant

SECRET_PREFIX = "tf-"


def new_secret() -> str:
    """A fresh key secret: `tf-` and 40 URL-safe characters."""
    return SECRET_PREFIX + secrets.token_urlsafe(30)  # 30 bytes encode to 40 characters


def hash_secret(secret: str) -> str:
    """The stored form of a key's secret: sha256, hex."""
    return hashlib.sha256(secret.encode()).hexdigest()


def check_key_args(
    tenant: str,
    default_tier: str,
    allowed: tuple[str, ...] | list[str] | None,
    budget_usd: Decimal | None,
    tokens_per_minute: int | None,
) -> tuple[str, ...] | None:
    """Refuse impossible key settings; returns the allowed tiers, deduplicated."""
    if not tenant.strip():
        raise BadInput("tenant name is empty", param="tenant")
    tiers = None if allowed is None else tuple(dict.fromkeys(allowed))
    for tier in (default_tier, *(tiers or ())):
        if not tier or "," in tier:
            raise BadInput(f"bad tier name {tier!r}", param="tier")
    if tiers is not None and default_tier not in tiers:
        raise BadInput(f"default tier {default_tier!r} is not among allowed {tiers}")
    if budget_usd is not None and budget_usd < 0:
        raise BadInput("budget must not be negative", param="budget_usd")
    if tokens_per_minute is not None and tokens_per_minute <= 0:
        raise BadInput("tokens_per_minute must be positive", param="tokens_per_minute")
    return tiers


# Keys with their tenant's name.
KEYS = select(ApiKey, Tenant.name).join(Tenant, Tenant.id == ApiKey.tenant_id)


def key_record(key: ApiKey, tenant: str) -> KeyRecord:
    """A stored key as the record the API hands out."""
    tiers = None if key.allowed_tiers is None else tuple(key.allowed_tiers.split(","))
    return KeyRecord(
        id=key.id,
        tenant_id=key.tenant_id,
        tenant=tenant,
        prefix=key.prefix,
        default_tier=key.default_tier,
        allowed_tiers=tiers,
        budget_micros=key.budget_micros,
        spent_micros=key.spent_micros,
        tokens_per_minute=key.tokens_per_minute,
        is_admin=key.is_admin,
        created_at=key.created_at,
        revoked_at=key.revoked_at,
    )
