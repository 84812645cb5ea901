"""The factory's books: keys, budgets, usage events and P&L (SQLite or PostgreSQL).

Money: rows hold integer micro-dollars (`*_micros`); reports and `*_usd` arguments are
`Decimal` dollars. Times: timezone-aware UTC datetimes.

Budget reservation, as the gateway should use it:
1. before dispatch, `charge(key_id, estimate_micros)` with an upper bound on the request's
   price (its input plus `max_tokens` at the tier's price); False means the budget cannot
   cover it: refuse the request;
2. after the request, `record(event, charge_key=True, reserved_micros=estimate_micros)`:
   in one transaction the event is written and the key's spend moves by
   `revenue - estimate`, once, even if the write is retried.
Concurrent requests of one key can therefore never spend past its budget together.
"""

from tokenfactory.ledger.books import Ledger
from tokenfactory.ledger.keys import hash_secret
from tokenfactory.ledger.records import (
    KeyNotFound,
    KeyRecord,
    LedgerError,
    Outcome,
    UsageEvent,
    micros_to_usd,
    usd_to_micros,
)
from tokenfactory.ledger.report import Pnl, ReplicaSlice, Slice, Tokens

__all__ = [
    "KeyNotFound",
    "KeyRecord",
    "Ledger",
    "LedgerError",
    "Outcome",
    "Pnl",
    "ReplicaSlice",
    "Slice",
    "Tokens",
    "UsageEvent",
    "hash_secret",
    "micros_to_usd",
    "usd_to_micros",
]
