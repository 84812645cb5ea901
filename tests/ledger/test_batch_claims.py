"""Batch claims on SQLite and PostgreSQL: one gateway holds a batch at a time; a lease
that is not renewed runs out and another gateway takes the batch; closed batches are
nobody's."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

from test_batch_book import new_batch

from tokenfactory.ledger import Ledger


def test_one_gateway_holds_a_batch_until_it_lets_go(ledger: Ledger) -> None:
    book, b = new_batch(ledger)
    assert book.open_batches() == [b.id]
    assert book.claim(b.id, "gw-a", 60)
    assert not book.claim(b.id, "gw-b", 60)
    assert book.open_batches() == []  # held: no other gateway should look at it
    assert book.claim(b.id, "gw-a", 60)  # its holder may claim it again
    assert book.renew(b.id, "gw-a", 60) == "in_progress"
    assert book.renew(b.id, "gw-b", 60) is None  # not b's to renew
    book.unclaim(b.id, "gw-b")  # nor to let go
    assert not book.claim(b.id, "gw-b", 60)
    book.unclaim(b.id, "gw-a")
    assert book.open_batches() == [b.id]
    assert book.claim(b.id, "gw-b", 60)


def test_a_lease_not_renewed_runs_out_and_the_batch_moves(ledger: Ledger) -> None:
    book, b = new_batch(ledger)
    assert book.claim(b.id, "gw-a", 0.3)
    assert not book.claim(b.id, "gw-b", 0.3)
    limit = time.monotonic() + 10
    while not book.claim(b.id, "gw-b", 60):
        assert time.monotonic() < limit, "the lease never ran out"
        time.sleep(0.01)  # polling the database's view of the lease, with a deadline
    # The old holder finds out when it next renews: the claim is gone.
    assert book.renew(b.id, "gw-a", 60) is None
    assert book.renew(b.id, "gw-b", 60) == "in_progress"


def test_of_many_gateways_asking_at_once_one_gets_the_batch(ledger: Ledger) -> None:
    book, b = new_batch(ledger)
    start = threading.Barrier(8)

    def ask(n: int) -> bool:
        start.wait()
        return book.claim(b.id, f"gw-{n}", 60)

    with ThreadPoolExecutor(8) as pool:
        won = list(pool.map(ask, range(8)))
    assert won.count(True) == 1


def test_a_batch_created_with_a_claim_is_its_creators(ledger: Ledger) -> None:
    book, b = new_batch(ledger)
    args = (b.key_id, b.endpoint, b.input_file_id, "24h", None, b.expires_at)
    later = book.create(*args, "gw-a", 60)
    assert book.open_batches() == [b.id]  # the first has no claim; the new one is gw-a's
    assert not book.claim(later.id, "gw-b", 60)
    assert book.claim(later.id, "gw-a", 60)


def test_a_closed_batch_cannot_be_claimed(ledger: Ledger) -> None:
    book, b = new_batch(ledger)
    assert book.claim(b.id, "gw-a", 60)
    book.close(b.id, "cancelled", {})
    book.unclaim(b.id, "gw-a")
    assert not book.claim(b.id, "gw-b", 60)
    assert book.open_batches() == []
