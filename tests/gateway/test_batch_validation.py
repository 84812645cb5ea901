"""Bad batch input: the batch fails validation with per-line errors, nothing runs or is
billed, and the floor goes on serving."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import openai
import pytest
from batch_helpers import ended, jsonl, line, submit, wait_for
from floor_helpers import MakeGateway

sys.path.insert(0, str(Path(__file__).parent.parent / "engines"))
from tiny_gguf import write_tiny_llama

from tokenfactory.gateway.batch_input import check

MODEL = "smollm2-135m"
MAX_BODY = 600


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_llama(tmp_path_factory.mktemp("gguf") / "tiny.gguf")


def factory(model: Path) -> str:
    return (
        f'[[replicas]]\nname = "cpu-0"\nengine = "llamacpp"\nmodel = "{MODEL}"\n'
        f'path = "{model}"\nmax_concurrency = 2\ncost_per_hour = "0.08925"\n'
        f'\n[server]\nadmin_key = "admin"\nmax_body_bytes = {MAX_BODY}\n'
    )


def test_every_kind_of_bad_line_fails_the_batch_with_its_line_and_nothing_runs(
    tiny: Path, make_gateway: MakeGateway
) -> None:
    gw = make_gateway(text=factory(tiny))
    c = openai.OpenAI(base_url=gw.v1, api_key=gw.key(), max_retries=0, timeout=60)
    no_id = line("x", MODEL, 2)
    del no_id["custom_id"]
    other_url = line("u", MODEL, 2) | {"url": "/v1/completions"}
    streaming = line("s", MODEL, 2)
    streaming["body"]["stream"] = True
    rows = [
        json.dumps(line("ok-1", MODEL, 2)),  # 1
        "{not json",  # 2
        json.dumps(no_id),  # 3
        json.dumps(line("ok-1", MODEL, 2)),  # 4: repeats line 1's custom_id
        json.dumps(other_url),  # 5
        json.dumps(line("m", "gpt-4o", 2)),  # 6: a model not served here
        json.dumps(line("big", MODEL, 2, "x" * MAX_BODY)),  # 7: over the size limit
        json.dumps(line("t", MODEL, 0)),  # 8: max_tokens below 1
        json.dumps(streaming),  # 9
        json.dumps(line("ok-2", MODEL, 2)),  # 10
    ]
    b = submit(c, ("\n".join(rows) + "\n").encode())
    failed = wait_for(c, b.id, ended)
    assert failed.status == "failed" and failed.failed_at is not None
    assert failed.errors is not None and failed.errors.object == "list"
    found = {(e.line, e.code, e.param) for e in failed.errors.data or []}
    assert found == {
        (2, "invalid_json_line", None),
        (3, "missing_custom_id", "custom_id"),
        (4, "duplicate_custom_id", "custom_id"),
        (5, "mismatched_endpoint", "url"),
        (6, "model_not_found", "body.model"),
        (7, "request_too_large", None),
        (8, "invalid_request", "body.max_tokens"),
        (9, "invalid_request", "body.stream"),
    }
    assert all(e.message for e in failed.errors.data or [])
    assert failed.request_counts is not None and failed.request_counts.total == 0
    assert failed.output_file_id is None and failed.in_progress_at is None
    assert gw.ledger.events() == []
    # One bad line among good ones is enough; and the floor still serves after all this.
    one_bad = jsonl([line("a", MODEL, 2), line("b", MODEL, 2)]) + b"[1, 2]\n"
    again = wait_for(c, submit(c, one_bad).id, ended)
    assert again.status == "failed"
    assert [(e.line, e.code) for e in again.errors.data or []] == [(3, "invalid_json_line")]  # type: ignore[union-attr]
    assert gw.ledger.events() == []
    empty = wait_for(c, submit(c, b"\n\n").id, ended)
    assert empty.status == "failed"
    assert [e.code for e in empty.errors.data or []] == ["empty_file"]  # type: ignore[union-attr]
    good = wait_for(c, submit(c, jsonl([line("a", MODEL, 2)])).id, ended)
    assert good.status == "completed" and len(gw.ledger.events()) == 1


def test_a_batch_runs_one_model() -> None:
    two = jsonl([line("a", "m1", 2), line("b", "m2", 2), line("c", "m1", 2)])
    checked = check(two, "/v1/chat/completions", {"m1", "m2"}, 10_000)
    assert [(e["line"], e["code"]) for e in checked.errors] == [(2, "mismatched_model")]
    fine = check(jsonl([line("a", "m1", 2)]), "/v1/chat/completions", {"m1"}, 10_000)
    assert fine.errors == [] and fine.model == "m1"
    assert [(n, cid) for n, cid, _ in fine.lines] == [(1, "a")]
    post = line("a", "m1", 2) | {"method": "GET"}
    assert check(jsonl([post]), "/v1/chat/completions", {"m1"}, 10_000).errors[0]["code"] == (
        "invalid_method"
    )
    bad_utf8 = check(b'{"custom_id": "\xff"}\n', "/v1/chat/completions", {"m1"}, 10_000)
    assert bad_utf8.errors[0]["code"] == "invalid_json_line"
