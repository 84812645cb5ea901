"""bench pulls the factory's P&L for exactly its run: not a minute rounded up, not the
requests that ended before it began."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import openai
from bench_helpers import MODEL, bench_json
from floor_helpers import ADMIN, Gateway


def test_the_pnl_covers_the_run_and_nothing_before_it(
    run: Callable[..., Any], gateway: Gateway
) -> None:
    key = gateway.key()
    client = openai.OpenAI(base_url=gateway.v1, api_key=key, max_retries=0, timeout=60)
    for _ in range(2):  # billed just before the run: outside its window
        client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "before"}], max_tokens=8
        )
    before = max(e.ended_at for e in gateway.ledger.events())
    code, s = bench_json(
        run,
        f"--url {gateway.v1} --model {MODEL} --api-key {key} --admin-key {ADMIN} "
        "--requests 3 --input-tokens 20 --output-tokens 4",
    )
    after = datetime.now(UTC)
    assert code == 0 and s["requests_completed"] == 3
    pnl = s["pnl"]
    assert "error" not in pnl, pnl
    since = datetime.fromisoformat(pnl["window"]["since"])
    until = datetime.fromisoformat(pnl["window"]["until"])
    assert before < since < until < after
    assert pnl["requests"]["total"] == 3  # the run's, not the two before it
    assert pnl["tokens"]["output"] == s["tokens"]["output"]
    # The run's own length, not a whole minute: idle cost is for the run's time only.
    assert pnl["window"]["seconds"] == (until - since).total_seconds() < 30
    assert pnl["window_asked"] == f"the run's {pnl['window']['seconds']:.1f} s"
