"""What the batch tests share: input files, a batch's wait, gateways that can restart."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import openai
from floor_helpers import Gateway
from openai.types import Batch
from servers import serving

from tokenfactory.catalog import Catalog
from tokenfactory.config.factory import load_factory
from tokenfactory.gateway.app import create_app
from tokenfactory.gateway.runtime import Floor, build_floor
from tokenfactory.ledger import Ledger

CHAT = "/v1/chat/completions"


def line(custom_id: str, model: str, max_tokens: int, text: str = "Go on.") -> dict[str, Any]:
    """One chat request of a batch input."""
    body = {"model": model, "messages": [{"role": "user", "content": text}]}
    body["max_tokens"] = max_tokens
    return {"custom_id": custom_id, "method": "POST", "url": CHAT, "body": body}


def jsonl(lines: list[dict[str, Any]]) -> bytes:
    """A JSONL file of these objects."""
    return "".join(json.dumps(x) + "\n" for x in lines).encode()


def submit(c: openai.OpenAI, content: bytes, endpoint: str = CHAT) -> Batch:
    """Upload an input file and create a batch over it."""
    f = c.files.create(file=("input.jsonl", content), purpose="batch")
    return c.batches.create(
        input_file_id=f.id,
        endpoint=endpoint,  # type: ignore[arg-type]
        completion_window="24h",
        metadata={"job": "test"},
    )


def wait_for(
    c: openai.OpenAI, batch_id: str, done: Callable[[Batch], bool], deadline_s: float = 120
) -> Batch:
    """Poll the batch until `done` holds (or fail at the deadline)."""
    limit = time.monotonic() + deadline_s
    while True:
        b = c.batches.retrieve(batch_id)
        if done(b):
            return b
        assert time.monotonic() < limit, f"batch stuck: {b.status} {b.request_counts}"
        time.sleep(0.02)  # polling the gateway's own state, with a deadline


def ended(b: Batch) -> bool:
    """Whether a batch reached a final status."""
    return b.status in ("completed", "failed", "expired", "cancelled")


def output_lines(c: openai.OpenAI, file_id: str | None) -> list[dict[str, Any]]:
    """The parsed lines of an output or error file (none without a file)."""
    if file_id is None:
        return []
    return [json.loads(x) for x in c.files.content(file_id).text.splitlines()]


@contextmanager
def gateway(catalog: Catalog, tmp_path: Path, text: str, database: str) -> Iterator[Gateway]:
    """A gateway over a factory file and a database, stopped when the block ends."""
    path = tmp_path / "factory.toml"
    path.write_text(text)
    floor = build_floor(load_factory(path, catalog), catalog, database)
    with serving(create_app(floor)) as url:
        ledger = Ledger(database)
        try:
            yield Gateway(url, ledger)
        finally:
            ledger.close()


def floor_of(catalog: Catalog, tmp_path: Path, text: str, database: str) -> Floor:
    """The floor a factory text builds (for its prices)."""
    path = tmp_path / "prices.toml"
    path.write_text(text)
    return build_floor(load_factory(path, catalog), catalog, database)
