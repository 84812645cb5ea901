"""The dashboard's batch queue: batches sent through the Batch API on the twin, every
tenant's, with the counts the batch book holds."""

from __future__ import annotations

from datetime import datetime

import httpx
import openai
from batch_helpers import ended, jsonl, line, submit, wait_for
from floor_helpers import ADMIN, MakeGateway

from tokenfactory.ledger.batches import BatchBook

ROUTE = "/v1/factory/dashboard"
MODEL = "llama-3.1-8b"


def test_the_dashboard_lists_every_tenants_batches_with_the_books_counts(
    twin: str, make_gateway: MakeGateway
) -> None:
    gw = make_gateway([twin], concurrency=4)
    acme = openai.OpenAI(base_url=gw.v1, api_key=gw.key("acme"), max_retries=0, timeout=60)
    beta = openai.OpenAI(base_url=gw.v1, api_key=gw.key("beta"), max_retries=0, timeout=60)
    # acme: three answers and one line that cannot fit the model's context (it fails).
    lines = [line(f"a{i}", MODEL, 40 + 20 * i) for i in range(3)]
    lines.append(line("too-long", MODEL, 10_000_000))
    first = submit(acme, jsonl(lines))
    second = submit(beta, jsonl([line(f"b{i}", MODEL, 30) for i in range(2)]))
    done = {b.id: wait_for(c, b.id, ended) for c, b in ((acme, first), (beta, second))}
    assert done[first.id].status == done[second.id].status == "completed"

    r = httpx.get(gw.url + ROUTE, headers={"Authorization": f"Bearer {ADMIN}"})
    assert r.status_code == 200, r.text
    shown = {b["id"]: b for b in r.json()["batches"]}
    assert list(shown) == [second.id, first.id]  # newest first, both tenants

    book = BatchBook(gw.ledger)
    for batch_id, tenant, counts in (
        (first.id, "acme", (4, 3, 1)),
        (second.id, "beta", (2, 2, 0)),
    ):
        stored = book.batch(batch_id)
        assert stored is not None
        c = stored.counts
        assert (c.total, c.completed, c.failed) == counts  # the lines as the book has them
        b = shown[batch_id]
        assert b["tenant"] == tenant and b["status"] == "completed" and b["model"] == MODEL
        total, completed, failed = counts
        assert b["request_counts"] == {"total": total, "completed": completed, "failed": failed}
        assert b["progress"] == 1.0  # no line left pending
        # The same moments as the tenant's own Batch object (unix seconds there).
        api = done[batch_id]
        assert int(datetime.fromisoformat(b["created_at"]).timestamp()) == api.created_at
        assert int(datetime.fromisoformat(b["expires_at"]).timestamp()) == api.expires_at
        assert api.completed_at is not None
        assert int(datetime.fromisoformat(b["ended_at"]).timestamp()) == api.completed_at
