"""What the bench tests share: the twin's model name, running the command for its JSON."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

MODEL = "llama-3.1-8b"


def bench_json(run: Callable[..., Any], args: str) -> tuple[int, dict[str, Any]]:
    """Run `tokenfactory bench ARGS --json`: its exit status and its JSON."""
    result = run("bench", *args.split(), "--json")
    assert result.out, result.err
    return result.code, json.loads(result.out)
