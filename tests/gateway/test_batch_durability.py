"""A batch survives its gateway: restarted mid-batch it runs each line exactly once and
bills it once; cancelled or expired it stops, keeps what finished and bills only that."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import openai
import pytest
from batch_helpers import ended, gateway, jsonl, line, output_lines, submit, wait_for
from floor_helpers import wait_until
from openai.types import Batch
from servers import free_port

from tokenfactory.catalog import Catalog
from tokenfactory.ledger import Ledger
from tokenfactory.ledger.batches import BatchBook

sys.path.insert(0, str(Path(__file__).parent.parent / "engines"))
from tiny_gguf import write_tiny_llama

MODEL = "smollm2-135m"
LINES = 10
TOKENS = 200


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_llama(tmp_path_factory.mktemp("gguf") / "tiny.gguf")


def factory(model: Path, extra: str = "") -> str:
    return (
        f'[[replicas]]\nname = "cpu-0"\nengine = "llamacpp"\nmodel = "{MODEL}"\n'
        f'path = "{model}"\nmax_concurrency = 2\ncost_per_hour = "0.08925"\n'
        '\n[server]\nadmin_key = "admin"\n' + extra
    )


def client(url: str, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0, timeout=60)


def batch_input() -> bytes:
    return jsonl([line(f"q{i}", MODEL, TOKENS, f"question {i}") for i in range(LINES)])


def check_billing(ledger: Ledger, batch_id: str, key_id: int, delivered: dict[str, int]) -> None:
    """Each delivered line is billed once for what it delivered; stopped attempts (their
    own ids) earn nothing; the key was charged exactly the sum."""
    events = [e for e in ledger.events(limit=10_000) if e.request_id.startswith(batch_id)]
    billed = {e.request_id: e for e in events if ".stopped-" not in e.request_id}
    assert {rid: e.output_tokens for rid, e in billed.items()} == delivered
    assert all(e.revenue_micros > 0 and e.tier_served == "batch" for e in billed.values())
    stopped = [e for e in events if ".stopped-" in e.request_id]
    assert all(e.revenue_micros == 0 and e.outcome == "client_cancelled" for e in stopped)
    key = ledger.get_key(key_id)
    assert key is not None
    assert key.spent_micros == sum(e.revenue_micros for e in billed.values())


def finished_lines(b: Batch) -> int:
    return 0 if b.request_counts is None else b.request_counts.completed


def delivered_tokens(lines: list[dict[str, object]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for o in lines:
        response = o["response"]
        assert isinstance(response, dict) and response["status_code"] == 200
        out[response["request_id"]] = response["body"]["usage"]["completion_tokens"]
    return out


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_gateway_restarted_mid_batch_resumes_it_and_runs_each_line_once(
    tiny: Path, catalog: Catalog, tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    database = (
        f"sqlite:///{tmp_path / 'ledger.db'}"
        if backend == "sqlite"
        else request.getfixturevalue("pg_database")
    )
    with gateway(catalog, tmp_path, factory(tiny), database) as gw:
        record, secret = gw.ledger.create_key("acme")
        c = client(gw.url, secret)
        b = submit(c, batch_input())
        wait_for(c, b.id, lambda x: finished_lines(x) >= 2)
    # The gateway is gone mid-batch: some lines done, the rest still to run.
    ledger = Ledger(database)
    halfway = BatchBook(ledger).batch(b.id)
    assert halfway is not None and halfway.status == "in_progress"
    assert 2 <= halfway.counts.completed < LINES
    stopped = [e for e in ledger.events() if ".stopped-" in e.request_id]
    assert stopped, "no line was in flight when the gateway stopped"
    ledger.close()

    with gateway(catalog, tmp_path, factory(tiny), database) as gw:
        c = client(gw.url, secret)
        done = wait_for(c, b.id, ended)
        assert done.status == "completed" and done.request_counts is not None
        assert (done.request_counts.completed, done.request_counts.total) == (LINES, LINES)
        out = output_lines(c, done.output_file_id)
        assert sorted(o["custom_id"] for o in out) == sorted(f"q{i}" for i in range(LINES))
        delivered = delivered_tokens(out)
        assert set(delivered.values()) == {TOKENS}
        check_billing(gw.ledger, b.id, record.id, delivered)


def test_a_gateway_killed_mid_batch_loses_nothing_and_doubles_nothing(
    tiny: Path, catalog: Catalog, tmp_path: Path
) -> None:
    database = f"sqlite:///{tmp_path / 'ledger.db'}"
    ledger = Ledger(database)
    ledger.migrate()
    record, secret = ledger.create_key("acme")
    config = tmp_path / "killed.toml"
    # A short lease: the restarted gateway takes over the dead one's batch sooner.
    config.write_text(factory(tiny, "batch_lease_s = 2\n"))
    port = free_port()
    command = [sys.executable, "-m", "tokenfactory", "serve", "--config", str(config)]
    command += ["--database", database, "--port", str(port)]
    server = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: _answers(url), deadline_s=120)
        c = client(url, secret)
        b = submit(c, batch_input())
        wait_for(c, b.id, lambda x: finished_lines(x) >= 2)
        # No shutdown at all: the process (and its engine) die where they stand.
        os.killpg(server.pid, signal.SIGKILL)
        server.wait(timeout=30)
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=30)
    halfway = BatchBook(ledger).batch(b.id)
    assert halfway is not None and halfway.status == "in_progress"
    assert 2 <= halfway.counts.completed < LINES
    ledger.close()

    with gateway(catalog, tmp_path, factory(tiny), database) as gw:
        c = client(gw.url, secret)
        done = wait_for(c, b.id, ended)
        assert done.status == "completed" and done.request_counts is not None
        assert (done.request_counts.completed, done.request_counts.total) == (LINES, LINES)
        out = output_lines(c, done.output_file_id)
        assert sorted(o["custom_id"] for o in out) == sorted(f"q{i}" for i in range(LINES))
        check_billing(gw.ledger, b.id, record.id, delivered_tokens(out))


def _answers(url: str) -> bool:
    try:
        return httpx.get(url + "/health", timeout=5).status_code == 200
    except httpx.TransportError:
        return False


def test_a_cancelled_batch_keeps_what_finished_and_bills_only_that(
    tiny: Path, catalog: Catalog, tmp_path: Path
) -> None:
    database = f"sqlite:///{tmp_path / 'ledger.db'}"
    with gateway(catalog, tmp_path, factory(tiny), database) as gw:
        record, secret = gw.ledger.create_key("acme")
        c = client(gw.url, secret)
        b = submit(c, batch_input())
        wait_for(c, b.id, lambda x: finished_lines(x) >= 1)
        asked = c.batches.cancel(b.id)
        assert asked.status in ("cancelling", "cancelled") and asked.cancelling_at is not None
        done = wait_for(c, b.id, ended)
        assert done.status == "cancelled" and done.cancelled_at is not None
        assert done.request_counts is not None
        completed = done.request_counts.completed
        assert 1 <= completed < LINES and done.request_counts.failed == 0
        out = output_lines(c, done.output_file_id)
        errors = output_lines(c, done.error_file_id)
        assert len(out) == completed and len(errors) == LINES - completed
        assert all(e["error"]["code"] == "batch_cancelled" for e in errors)
        assert {o["custom_id"] for o in out} | {e["custom_id"] for e in errors} == {
            f"q{i}" for i in range(LINES)
        }
        check_billing(gw.ledger, b.id, record.id, delivered_tokens(out))
        # Cancelling again changes nothing.
        assert c.batches.cancel(b.id).status == "cancelled"


def test_a_batch_whose_window_closes_expires_with_what_finished(
    tiny: Path, catalog: Catalog, tmp_path: Path
) -> None:
    database = f"sqlite:///{tmp_path / 'ledger.db'}"
    short = "[tiers.batch]\ncompletion_window_s = 2\n"
    with gateway(catalog, tmp_path, factory(tiny, short), database) as gw:
        record, secret = gw.ledger.create_key("acme")
        c = client(gw.url, secret)
        many = jsonl([line(f"q{i}", MODEL, TOKENS) for i in range(200)])
        b = submit(c, many)
        assert b.expires_at is not None and b.expires_at - b.created_at == 2
        done = wait_for(c, b.id, ended)
        assert done.status == "expired" and done.expired_at is not None
        assert done.request_counts is not None
        completed = done.request_counts.completed
        assert completed < 200
        out = output_lines(c, done.output_file_id)
        errors = output_lines(c, done.error_file_id)
        assert len(out) == completed and len(errors) == 200 - completed
        assert all(e["error"]["code"] == "batch_expired" for e in errors)
        check_billing(gw.ledger, b.id, record.id, delivered_tokens(out))
