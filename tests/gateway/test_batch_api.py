"""The Batch API with OpenAI's own client, over the embedded llama.cpp and a tiny model:
the whole flow, tenants kept apart, and batches billed at batch prices."""

from __future__ import annotations

import sys
from decimal import Decimal
from pathlib import Path

import openai
import pytest
from batch_helpers import ended, jsonl, line, output_lines, submit, wait_for
from floor_helpers import MakeGateway, floors

from tokenfactory.economics.revenue import revenue
from tokenfactory.ledger.records import round_usd, usd_to_micros

sys.path.insert(0, str(Path(__file__).parent.parent / "engines"))
from tiny_gguf import write_tiny_llama

MODEL = "smollm2-135m"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_llama(tmp_path_factory.mktemp("gguf") / "tiny.gguf")


def factory(model: Path, concurrency: int = 2, extra: str = "") -> str:
    return (
        f'[[replicas]]\nname = "cpu-0"\nengine = "llamacpp"\nmodel = "{MODEL}"\n'
        f'path = "{model}"\nmax_concurrency = {concurrency}\ncost_per_hour = "0.08925"\n'
        '\n[server]\nadmin_key = "admin"\n' + extra
    )


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_batch_runs_every_line_once_at_batch_prices(
    tiny: Path, make_gateway: MakeGateway, backend: str, request: pytest.FixtureRequest
) -> None:
    database = None if backend == "sqlite" else request.getfixturevalue("pg_database")
    gw = make_gateway(text=factory(tiny), database=database)
    c = openai.OpenAI(base_url=gw.v1, api_key=gw.key("acme"), max_retries=0, timeout=60)
    wanted = {f"q{i}": 3 + i for i in range(5)}
    content = jsonl([line(cid, MODEL, n, f"question {cid}") for cid, n in wanted.items()])
    b = submit(c, content)
    assert b.status == "validating" and b.metadata == {"job": "test"}
    assert b.expires_at is not None and b.expires_at - b.created_at == 86_400

    done = wait_for(c, b.id, ended)
    assert done.status == "completed", done.errors
    assert done.request_counts is not None
    assert (done.request_counts.total, done.request_counts.completed) == (5, 5)
    assert done.request_counts.failed == 0 and done.error_file_id is None
    assert done.in_progress_at and done.finalizing_at and done.completed_at
    assert done.model == MODEL

    out = output_lines(c, done.output_file_id)
    assert sorted(o["custom_id"] for o in out) == sorted(wanted)
    floor = floors[-1]
    batch_prices = floor.prices[("smollm2-135m", "batch")]
    standard = floor.prices[("smollm2-135m", "standard")]
    assert batch_prices.output * 2 == standard.output  # the catalog's 0.5x
    inputs = outputs = 0
    for o in out:
        assert o["error"] is None and o["response"]["status_code"] == 200
        body, rid = o["response"]["body"], o["response"]["request_id"]
        usage = body["usage"]
        assert usage["completion_tokens"] == wanted[o["custom_id"]]  # one char, one token
        assert len(body["choices"][0]["message"]["content"]) == usage["completion_tokens"]
        event = gw.ledger.event(rid)
        assert event is not None and rid.startswith(b.id + "-")
        assert (event.tier_requested, event.tier_served) == ("batch", "batch")
        assert (event.input_tokens, event.output_tokens) == (
            usage["prompt_tokens"],
            usage["completion_tokens"],
        )
        price = revenue(batch_prices, event.input_tokens, 0, event.output_tokens)
        assert event.revenue_micros == usd_to_micros(round_usd(price))
        inputs += event.input_tokens
        outputs += event.output_tokens
    assert len(gw.ledger.events()) == 5
    assert done.usage is not None
    assert (done.usage.input_tokens, done.usage.output_tokens) == (inputs, outputs)
    assert done.usage.total_tokens == inputs + outputs

    listed = c.batches.list(limit=10)
    assert [x.id for x in listed.data] == [b.id]
    uploaded = c.files.retrieve(b.input_file_id)
    assert uploaded.bytes == len(content) and uploaded.purpose == "batch"
    assert c.files.content(b.input_file_id).content == content


def test_tenants_see_only_their_own_files_and_batches(
    tiny: Path, make_gateway: MakeGateway
) -> None:
    gw = make_gateway(text=factory(tiny))
    mine = openai.OpenAI(base_url=gw.v1, api_key=gw.key("acme"), max_retries=0, timeout=60)
    theirs = openai.OpenAI(base_url=gw.v1, api_key=gw.key("other"), max_retries=0, timeout=60)
    b = submit(mine, jsonl([line("a", MODEL, 2)]))
    done = wait_for(mine, b.id, ended)
    assert done.status == "completed" and done.output_file_id is not None
    for call in (
        lambda: theirs.batches.retrieve(b.id),
        lambda: theirs.batches.cancel(b.id),
        lambda: theirs.files.retrieve(b.input_file_id),
        lambda: theirs.files.content(b.input_file_id),
        lambda: theirs.files.content(done.output_file_id),  # type: ignore[arg-type]
        lambda: theirs.batches.create(
            input_file_id=b.input_file_id, endpoint="/v1/chat/completions", completion_window="24h"
        ),
    ):
        with pytest.raises(openai.NotFoundError) as e:
            call()
        assert e.value.body["code"] == "not_found"  # type: ignore[index]
    assert theirs.batches.list().data == []
    # The owner still sees everything.
    assert mine.batches.retrieve(b.id).status == "completed"
    assert len(output_lines(mine, done.output_file_id)) == 1


def test_requests_for_a_batch_that_cannot_be_made_get_clear_errors(
    tiny: Path, make_gateway: MakeGateway
) -> None:
    gw = make_gateway(text=factory(tiny))
    c = openai.OpenAI(base_url=gw.v1, api_key=gw.key("acme"), max_retries=0, timeout=60)
    f = c.files.create(file=("in.jsonl", jsonl([line("a", MODEL, 2)])), purpose="batch")
    bad = [
        ({"endpoint": "/v1/embeddings"}, "endpoint"),
        ({"completion_window": "1h"}, "completion_window"),
        ({"input_file_id": "file-nope"}, "input_file_id"),
    ]
    for change, param in bad:
        args = {"input_file_id": f.id, "endpoint": "/v1/chat/completions"}
        args |= {"completion_window": "24h"} | change
        with pytest.raises(openai.APIStatusError) as e:
            c.batches.create(**args)  # type: ignore[arg-type]
        assert e.value.status_code in (400, 404) and e.value.body["param"] == param  # type: ignore[index]
    with pytest.raises(openai.BadRequestError) as e:
        c.files.create(file=("in.jsonl", b"{}"), purpose="assistants")
    assert e.value.body["param"] == "purpose"  # type: ignore[index]
    flex_only = openai.OpenAI(
        base_url=gw.v1,
        api_key=gw.key("acme", default_tier="flex", allowed_tiers=["flex"]),
        max_retries=0,
    )
    with pytest.raises(openai.PermissionDeniedError):
        flex_only.batches.create(
            input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h"
        )
    finished = wait_for(c, submit(c, jsonl([line("a", MODEL, 2)])).id, ended)
    with pytest.raises(openai.BadRequestError) as e:
        c.batches.cancel(finished.id)
    assert "completed" in e.value.message
    assert len(gw.ledger.events()) == 1  # only the batch that was made ran


def test_lines_the_floor_refuses_end_in_the_error_file_unbilled(
    tiny: Path, make_gateway: MakeGateway
) -> None:
    gw = make_gateway(text=factory(tiny))
    c = openai.OpenAI(base_url=gw.v1, api_key=gw.key("acme"), max_retries=0, timeout=60)
    # Valid requests, but one asks for more tokens than the model's context holds.
    b = submit(c, jsonl([line("fits", MODEL, 4), line("too-long", MODEL, 5000)]))
    done = wait_for(c, b.id, ended)
    assert done.status == "completed" and done.request_counts is not None
    assert (done.request_counts.completed, done.request_counts.failed) == (1, 1)
    [good] = output_lines(c, done.output_file_id)
    [bad] = output_lines(c, done.error_file_id)
    assert good["custom_id"] == "fits" and bad["custom_id"] == "too-long"
    assert bad["response"]["status_code"] == 400 and bad["error"] is None
    error = bad["response"]["body"]["error"]
    assert error["param"] == "max_tokens" and "context" in error["message"]
    assert [e.request_id for e in gw.ledger.events()] == [good["response"]["request_id"]]

    # A key whose budget is spent: every line is refused, nothing is billed.
    broke = openai.OpenAI(
        base_url=gw.v1, api_key=gw.key("poor", budget_usd=Decimal(0)), max_retries=0, timeout=60
    )
    # (asking for 1500 tokens: an estimate worth reserving, even at smollm2 batch prices)
    refused = wait_for(broke, submit(broke, jsonl([line("a", MODEL, 1500)])).id, ended)
    assert refused.status == "completed" and refused.request_counts is not None
    assert (refused.request_counts.completed, refused.request_counts.failed) == (0, 1)
    [quota] = output_lines(broke, refused.error_file_id)
    assert quota["response"]["status_code"] == 429
    assert quota["response"]["body"]["error"]["code"] == "insufficient_quota"
    assert len(gw.ledger.events()) == 1
