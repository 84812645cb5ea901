"""The per-request writes as SQLAlchemy Core statements, built once per ledger.

A request's writes (reserve, open its journal row, advance it, bill it, settle) run
thousands of times a second on a busy floor. Built anew from ORM models, each cost more
Python than the database work itself; built once with bound parameters, each execution
finds its compiled SQL in SQLAlchemy's statement cache and only binds values.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    BigInteger,
    Integer,
    Select,
    Table,
    Update,
    bindparam,
    delete,
    func,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.sql.dml import Insert, ReturningDelete, ReturningInsert

from tokenfactory.ledger.schema import ApiKey, OpenRequestRow, UsageRow

_KEYS: Table = ApiKey.__table__  # type: ignore[assignment]
_USAGE: Table = UsageRow.__table__  # type: ignore[assignment]
_ROWS: Table = OpenRequestRow.__table__  # type: ignore[assignment]


@dataclass(frozen=True, slots=True)
class Statements:
    """The hot writes of one dialect; parameters are named after the columns they fill."""

    # :key_id, :micros -> the key's id when its budget covered the charge (and it was added)
    charge: Update
    # :key_id, :micros -> the key's id (none when there is no such key)
    spend: Update
    # :key_id -> the key's id if it exists
    key: Select[Any]
    # :key_ids (a list) -> those keys' ids, locked (PostgreSQL) in the order of their ids
    lock_keys: Select[Any]
    # every usage_events column but id and tenant_id (read from the key) -> the new row's
    # id; none when the request id was already billed or the key does not exist
    record: ReturningInsert[Any]
    # the same for many events at once -> the request ids that were new. SQLite: a list of
    # rows (executemany, sent as one multi-row INSERT), a key that does not exist fails it
    # (its tenant is NULL). PostgreSQL: one list per column (unnested; one fixed statement,
    # where a multi-row INSERT's text, new for each number of rows, costs psycopg ms to
    # parse), an event whose key does not exist is not written, as with `record`.
    record_many: ReturningInsert[Any]
    # every open_requests column -> an open row
    open_row: Insert
    # every open_requests column -> a row opened, or its event and updated_at replaced
    advance: Insert
    # :request_id -> the dropped row's request id and reservation
    drop: ReturningDelete[Any]
    # :request_ids (a list) -> each dropped row's request id and reservation; a list's IN
    # is rendered anew for each execution, which costs more than `drop` for one id
    drop_many: ReturningDelete[Any]


def statements(insert: Callable[[Table], Any], *, arrays: bool) -> Statements:
    """The statements for the dialect whose `insert` (with ON CONFLICT) is given; `arrays`:
    whether it takes a list as an array parameter (PostgreSQL)."""
    key_id, micros = bindparam("key_id", type_=Integer), bindparam("micros", type_=BigInteger)
    spent = {"spent_micros": _KEYS.c.spent_micros + micros}
    within = _KEYS.c.budget_micros.is_(None) | (
        _KEYS.c.spent_micros + micros <= _KEYS.c.budget_micros
    )
    # One statement each: a budget check and its add cannot be split by another writer.
    charge = update(_KEYS).where(_KEYS.c.id == key_id, within).values(spent).returning(_KEYS.c.id)
    spend = update(_KEYS).where(_KEYS.c.id == key_id).values(spent).returning(_KEYS.c.id)
    # The event's tenant is its key's, read in the insert itself: one statement, not two.
    values = {c.name: bindparam(c.name, type_=c.type) for c in _USAGE.c if c.name != "id"}
    values["tenant_id"] = _KEYS.c.tenant_id  # type: ignore[assignment]
    from_key = select(*values.values()).where(_KEYS.c.id == values["key_id"])
    record = (
        insert(_USAGE)
        .from_select(list(values), from_key)
        .on_conflict_do_nothing(index_elements=["request_id"])
        .returning(_USAGE.c.id)
    )
    many = _unnested(insert) if arrays else _values(insert, values)
    record_many = many.on_conflict_do_nothing(index_elements=["request_id"]).returning(
        _USAGE.c.request_id
    )
    upsert = insert(_ROWS)
    advance = upsert.on_conflict_do_update(
        index_elements=["request_id"],
        set_={"event": upsert.excluded.event, "updated_at": upsert.excluded.updated_at},
    )
    return Statements(
        charge=charge,
        spend=spend,
        key=select(_KEYS.c.id).where(_KEYS.c.id == key_id),
        lock_keys=select(_KEYS.c.id)
        .where(_KEYS.c.id.in_(bindparam("key_ids", expanding=True)))
        .order_by(_KEYS.c.id)
        .with_for_update(),
        record=record,
        record_many=record_many,
        open_row=_ROWS.insert(),
        advance=advance,
        drop=delete(_ROWS)
        .where(_ROWS.c.request_id == bindparam("request_id"))
        .returning(_ROWS.c.request_id, _ROWS.c.reserved_micros),
        drop_many=delete(_ROWS)
        .where(_ROWS.c.request_id.in_(bindparam("request_ids", expanding=True)))
        .returning(_ROWS.c.request_id, _ROWS.c.reserved_micros),
    )


def _values(insert: Callable[[Table], Any], values: dict[str, Any]) -> Any:
    """Many events' INSERT as VALUES rows, the tenant read from the key in each."""
    tenant = select(_KEYS.c.tenant_id).where(_KEYS.c.id == values["key_id"])
    return insert(_USAGE).values({**values, "tenant_id": tenant.scalar_subquery()})


def _unnested(insert: Callable[[Table], Any]) -> Any:
    """Many events' INSERT from one array per column, joined to their keys for the tenant."""
    columns = [c for c in _USAGE.c if c.name not in ("id", "tenant_id")]
    arrays = [bindparam(c.name, type_=ARRAY(c.type)) for c in columns]
    rows = func.unnest(*arrays).table_valued(*(c.name for c in columns)).render_derived()
    from_keys = select(*rows.c, _KEYS.c.tenant_id).join_from(
        rows, _KEYS, _KEYS.c.id == rows.c.key_id
    )
    return insert(_USAGE).from_select([*(c.name for c in columns), "tenant_id"], from_keys)
