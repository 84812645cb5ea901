"""The run summary's arithmetic on hand-made samples: percentiles, SLOs, goodput, errors."""

from __future__ import annotations

import pytest

from tokenfactory.bench import Objective, compare, failed, summarize
from tokenfactory.bench.sample import HTTP_ERROR, OK, RATE_LIMITED, UNFINISHED, Sample


def _sample(i: int, tier: str, ttft: float, tpot: float, out: int = 11, status: str = OK) -> Sample:
    """A request sent at i seconds: first token after ttft, then out - 1 tokens at tpot."""
    s = Sample(i, "request", tier, None, float(i), float(i), 100, out, status)
    if status == OK:
        s.first_token_s = i + ttft
        s.end_s = i + ttft + tpot * (out - 1)
        s.prompt_tokens, s.completion_tokens, s.tokens_from = 100, out, "usage"
    elif status != UNFINISHED:
        s.end_s = i + 0.001
        s.error = "HTTP 429: slow down" if status == RATE_LIMITED else "HTTP 500: boom"
    return s


def test_percentiles_are_numpys_linear_ones() -> None:
    # TTFTs of 1, 2, ..., 100 ms: p50 = 50.5, p90 = 90.1, p99 = 99.01, mean = 50.5.
    samples = [_sample(i, "standard", (i + 1) / 1000, 0.01) for i in range(100)]
    s = summarize(samples, {})
    assert s["ttft_ms"] == pytest.approx({"mean": 50.5, "p50": 50.5, "p90": 90.1, "p99": 99.01})
    assert s["tpot_ms"]["p50"] == pytest.approx(10.0)
    assert s["per_tier"]["standard"]["ttft_ms"] == s["ttft_ms"]


def test_slo_attainment_and_goodput_count_only_requests_within_the_objective() -> None:
    samples = [
        _sample(0, "realtime", 0.1, 0.02),  # meets 200 ms / 30 ms
        _sample(1, "realtime", 0.3, 0.02),  # TTFT too slow
        _sample(2, "realtime", 0.1, 0.04),  # TPOT too slow
        _sample(3, "realtime", 0, 0, status=RATE_LIMITED),
        _sample(4, "standard", 5.0, 0.5),  # no objective given: met
    ]
    objectives = {"realtime": Objective(ttft_s=0.2, tpot_s=0.03)}
    s = summarize(samples, objectives)
    realtime = s["per_tier"]["realtime"]
    assert realtime["requests"] == 4 and realtime["requests_completed"] == 3
    assert realtime["refused"] == 1 and realtime["errors"] == 0
    assert realtime["slo_attainment"] == pytest.approx(1 / 4)
    duration = 4 + 5.0 + 0.5 * 10  # the last end
    assert s["duration_s"] == pytest.approx(duration)
    assert realtime["goodput_tokens_per_s"] == pytest.approx(11 / duration)
    assert s["goodput_tokens_per_s"] == pytest.approx(22 / duration)
    assert s["output_tokens_per_s"] == pytest.approx(4 * 11 / duration)


def test_errors_and_refusals_are_counted_and_decide_the_exit_status() -> None:
    ok = [_sample(i, "standard", 0.1, 0.01) for i in range(3)]
    refused = [_sample(3, "flex", 0, 0, status=RATE_LIMITED)]
    errors = [_sample(4 + i, "standard", 0, 0, status=HTTP_ERROR) for i in range(2)]
    cut = [_sample(9, "standard", 0, 0, status=UNFINISHED)]
    s = summarize(ok + refused + errors + cut, {})
    assert s["by_status"] == {
        "ok": 3,
        "rate_limited": 1,
        "http_error": 2,
        "transport_error": 0,
        "unfinished": 1,
    }
    assert s["requests"] == 6  # the cut-off one was never offered in full
    assert s["per_tier"]["standard"]["errors"] == 2
    assert s["error_messages"] == [
        {"message": "HTTP 500: boom", "count": 2},
        {"message": "HTTP 429: slow down", "count": 1},
    ]
    assert failed(s)
    assert not failed(summarize(ok + refused + cut, {}))  # 429s are the factory's policy
    assert failed(summarize(refused, {}))  # nothing completed


def test_compare_pairs_the_figures_both_summaries_have() -> None:
    measured = summarize([_sample(i, "realtime", 0.1, 0.01) for i in range(5)], {})
    predicted = {**measured, "output_tokens_per_s": measured["output_tokens_per_s"] / 2}
    predicted["per_tier"] = {}  # a prediction without that tier: no per-tier rows
    rows = {r.figure: r for r in compare(predicted, measured)}
    throughput = rows["output tokens/s"]
    assert throughput.difference == pytest.approx(1.0)  # measured twice the prediction
    assert rows["TTFT p50 ms"].difference == pytest.approx(0.0)
    assert not any(name.startswith("realtime:") for name in rows)
    rows = {r.figure: r for r in compare(measured, measured)}
    assert rows["realtime: SLO attainment"].measured == 1.0
