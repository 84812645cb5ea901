"""The ledger's tables, as SQLAlchemy models; `migrations/` creates exactly these."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Dialect,
    Double,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from tokenfactory.ledger.records import Outcome

# Named constraints, so a migration can find them again on every dialect.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# SQLite only autoincrements INTEGER PRIMARY KEY (its rowid), never BIGINT.
BigId = BigInteger().with_variant(Integer(), "sqlite")

OUTCOMES = ", ".join(f"'{o.value}'" for o in Outcome)


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in and out; SQLite keeps them naive, PostgreSQL as timestamptz."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Store UTC; naive datetimes are refused since their zone is a guess."""
        if value is None:
            return None
        if value.utcoffset() is None:
            raise ValueError(f"naive datetime {value!r} given to the ledger")
        utc = value.astimezone(UTC)
        return utc.replace(tzinfo=None) if dialect.name == "sqlite" else utc

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Read back as aware UTC whatever the dialect returned."""
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    """Declarative base carrying the naming convention."""

    metadata = MetaData(naming_convention=NAMING)


class Tenant(Base):
    """Who pays."""

    __tablename__ = "tenants"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ApiKey(Base):
    """A tenant's key: only the sha256 of its secret is stored."""

    __tablename__ = "api_keys"
    __table_args__ = (
        CheckConstraint("budget_micros IS NULL OR budget_micros >= 0", name="budget"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"), index=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    default_tier: Mapped[str] = mapped_column(String(32))
    allowed_tiers: Mapped[str | None] = mapped_column(String(200))  # comma list; NULL: all
    budget_micros: Mapped[int | None] = mapped_column(BigInteger)
    spent_micros: Mapped[int] = mapped_column(BigInteger, default=0)
    tokens_per_minute: Mapped[int | None] = mapped_column(Integer)
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class UsageRow(Base):
    """One request attempt, written once: `request_id` is the idempotency key."""

    __tablename__ = "usage_events"
    __table_args__ = (
        CheckConstraint(f"outcome IN ({OUTCOMES})", name="outcome"),
        CheckConstraint(
            "input_tokens >= 0 AND cached_tokens >= 0 AND output_tokens >= 0", name="tokens"
        ),
        CheckConstraint("revenue_micros >= 0 AND cost_micros >= 0", name="money"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    request_id: Mapped[str] = mapped_column(String(128), unique=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"), index=True)
    key_id: Mapped[int] = mapped_column(ForeignKey("api_keys.id"), index=True)
    model: Mapped[str] = mapped_column(String(200))
    replica: Mapped[str | None] = mapped_column(String(200))
    tier_requested: Mapped[str] = mapped_column(String(32))
    tier_served: Mapped[str] = mapped_column(String(32))
    input_tokens: Mapped[int] = mapped_column(Integer)
    cached_tokens: Mapped[int] = mapped_column(Integer)
    output_tokens: Mapped[int] = mapped_column(Integer)
    queued_s: Mapped[float] = mapped_column(Double)
    ttft_s: Mapped[float | None] = mapped_column(Double)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # Reports window events by when they ended (were billed).
    ended_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    revenue_micros: Mapped[int] = mapped_column(BigInteger)
    cost_micros: Mapped[int] = mapped_column(BigInteger)
    work_s: Mapped[float] = mapped_column(Double)
    outcome: Mapped[str] = mapped_column(String(32))
    preemptions: Mapped[int] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class OpenRequestRow(Base):
    """A request still running: the event it would be billed with if the gateway died now.

    Opened with its budget reservation in one transaction, advanced before the client is
    sent more tokens, and deleted in the transaction that writes its final usage event.
    """

    __tablename__ = "open_requests"

    request_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    key_id: Mapped[int] = mapped_column(ForeignKey("api_keys.id"), index=True)
    reserved_micros: Mapped[int] = mapped_column(BigInteger)
    event: Mapped[str] = mapped_column(Text)  # the UsageEvent as JSON, outcome interrupted
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # The gateway running it (`gateways.name`); NULL for rows older than owners: no one's.
    owner: Mapped[str | None] = mapped_column(String(64), index=True)


class GatewayRow(Base):
    """A running gateway and until when its lease holds: past it, the gateway is dead and
    another bills the requests it left running."""

    __tablename__ = "gateways"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    lease_until: Mapped[datetime] = mapped_column(UTCDateTime())


BATCH_STATUSES = (
    "validating",
    "failed",
    "in_progress",
    "finalizing",
    "completed",
    "expired",
    "cancelling",
    "cancelled",
)
LINE_STATUSES = ("pending", "completed", "failed", "cancelled", "expired")


def _among(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class FileRow(Base):
    """An uploaded batch input, or a batch's output or error file (OpenAI's file object)."""

    __tablename__ = "files"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"), index=True)
    filename: Mapped[str] = mapped_column(String(255))
    purpose: Mapped[str] = mapped_column(String(32))
    size: Mapped[int] = mapped_column(BigInteger)  # bytes
    content: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class BatchRow(Base):
    """A batch: its input, its key, its status and when each status began."""

    __tablename__ = "batches"
    __table_args__ = (CheckConstraint(_among("status", BATCH_STATUSES), name="status"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"), index=True)
    key_id: Mapped[int] = mapped_column(ForeignKey("api_keys.id"))
    endpoint: Mapped[str] = mapped_column(String(64))
    input_file_id: Mapped[str] = mapped_column(ForeignKey("files.id"))
    completion_window: Mapped[str] = mapped_column(String(16))
    model: Mapped[str | None] = mapped_column(String(200))  # known once validated
    status: Mapped[str] = mapped_column(String(16), index=True)
    metadata_json: Mapped[str | None] = mapped_column(Text)
    errors_json: Mapped[str | None] = mapped_column(Text)
    output_file_id: Mapped[str | None] = mapped_column(ForeignKey("files.id"))
    error_file_id: Mapped[str | None] = mapped_column(ForeignKey("files.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    in_progress_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finalizing_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    failed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    expired_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    cancelling_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    cancelled_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # The gateway running it and until when; another may take it once the lease is past.
    claimed_by: Mapped[str | None] = mapped_column(String(64))
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime())


class BatchLineRow(Base):
    """One request of a batch; once it ran, its output (or error) line and its tokens."""

    __tablename__ = "batch_lines"
    __table_args__ = (
        CheckConstraint(_among("status", LINE_STATUSES), name="status"),
        Index("ix_batch_lines_batch_id_status", "batch_id", "status"),
    )

    batch_id: Mapped[str] = mapped_column(ForeignKey("batches.id"), primary_key=True)
    line: Mapped[int] = mapped_column(Integer, primary_key=True)  # 1-based, as in the file
    custom_id: Mapped[str] = mapped_column(Text)
    body: Mapped[str] = mapped_column(Text)  # the request body, JSON
    status: Mapped[str] = mapped_column(String(16))
    output: Mapped[str | None] = mapped_column(Text)  # the output or error file's line
    input_tokens: Mapped[int] = mapped_column(Integer, default=0)
    cached_tokens: Mapped[int] = mapped_column(Integer, default=0)
    output_tokens: Mapped[int] = mapped_column(Integer, default=0)
    # A budget reservation held while the line runs, released if the gateway stops first.
    reserved_micros: Mapped[int] = mapped_column(BigInteger, default=0)
