"""bench against the factory: the gateway over two twin replicas, its ledger and its P&L."""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench_helpers import MODEL, bench_json
from floor_helpers import ADMIN, Gateway

WORKLOAD = """
[workload]
arrival = "poisson"
requests = 12
qps = 30.0
input_tokens = 80
output_tokens = 16
seed = 2

[[workload.mix]]
tier = "realtime"
share = 0.5

[[workload.mix]]
tier = "standard"
share = 0.5

[workload.sessions]
count = 3
turns = 3
think_s = 0.1
system_tokens = 40
user_tokens = 20
output_tokens = 12

[workload.agents]
count = 2
steps = 4
system_tokens = 60
task_tokens = 20
tool_output_tokens = 30
call_output_tokens = 8
reasoning_output_tokens = 24
tier = "flex"
"""


def test_humans_and_agents_through_the_gateway_match_its_ledger_token_for_token(
    run: Callable[..., Any], gateway: Gateway, scenario: Callable[..., Path]
) -> None:
    path = scenario(WORKLOAD, gpus=2)
    key = gateway.key()
    code, s = bench_json(
        run,
        f"{path} --url {gateway.v1} --api-key {key} --admin-key {ADMIN} --seed 2 "
        f"--out {path.parent / 'run'}",
    )
    assert code == 0
    sent = 12 + 3 * 3 + 2 * 4
    assert s["requests_completed"] == sent
    assert set(s["per_tier"]) == {"realtime", "standard", "flex"}
    assert s["per_tier"]["flex"]["requests"] == 2 * 4
    pnl = s["pnl"]
    assert "error" not in pnl
    # What bench measured from the usage chunks is what the factory billed.
    assert pnl["tokens"]["input"] == s["tokens"]["input"]
    assert pnl["tokens"]["output"] == s["tokens"]["output"]
    assert pnl["requests"]["total"] == sent
    assert pnl["revenue_usd"] > 0
    books = gateway.ledger.pnl()
    assert books["tokens"]["input"] == s["tokens"]["input"]
    assert books["tokens"]["output"] == s["tokens"]["output"]
    with (path.parent / "run" / "requests.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == sent
    # The gateway answers each request with the tier it served (a late realtime request
    # is served, and billed, as standard).
    assert {r["served_tier"] for r in rows if r["kind"] == "agent"} == {"flex"}
    assert {r["served_tier"] for r in rows} <= {"realtime", "standard", "flex"}


def test_a_wrong_admin_key_leaves_the_run_whole_and_says_why(
    run: Callable[..., Any], gateway: Gateway
) -> None:
    key = gateway.key()
    code, s = bench_json(
        run,
        f"--url {gateway.v1} --model {MODEL} --api-key {key} --admin-key wrong --requests 3 "
        "--input-tokens 20 --output-tokens 4",
    )
    assert code == 0 and s["requests_completed"] == 3
    assert s["pnl"]["error"] == "HTTP 403: this route needs an admin key"


def test_extra_body_goes_out_with_every_request(run: Callable[..., Any], gateway: Gateway) -> None:
    key = gateway.key()
    base = f"--url {gateway.v1} --model {MODEL} --api-key {key} --requests 3 --input-tokens 20"
    code, s = bench_json(run, base + ' --output-tokens 4 --extra-body {"temperature":0.5}')
    assert code == 0 and s["requests_completed"] == 3
    # The gateway refuses parameters it does not know, as OpenAI does: proof they were sent.
    code, s = bench_json(run, base + ' --output-tokens 4 --extra-body {"ignore_eos":true}')
    assert code == 1 and s["by_status"]["http_error"] == 3
    assert "ignore_eos" in s["error_messages"][0]["message"]
    result = run("bench", *base.split(), "--output-tokens", "4", "--extra-body", "[1]")
    assert (result.code, result.err) == (2, "error: --extra-body must be a JSON object\n")
