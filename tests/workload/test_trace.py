from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tokenfactory.errors import ConfigError
from tokenfactory.workload import (
    Ids,
    LogNormal,
    Request,
    TierMix,
    poisson,
    read_trace,
    write_trace,
)

HEADER = "arrival_s,input_tokens,output_tokens,tier,session,prefix_tokens"


def sample_requests() -> list[Request]:
    mix = TierMix([("realtime", 0.2), ("standard", 0.5), ("flex", 0.2), ("batch", 0.1)])
    rng = np.random.default_rng(0)
    rs = poisson(3.0, 200, LogNormal(500, 4000), LogNormal(100, 900), mix, rng, Ids()).initial()
    for i, r in enumerate(rs[:50]):  # some requests belong to sessions
        r.session, r.prefix_tokens, r.kind = i % 5, r.input_tokens // 2, "chat"
    return rs


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_round_trip(tmp_path: Path, suffix: str) -> None:
    rs = sample_requests()
    path = tmp_path / f"trace{suffix}"
    write_trace(path, rs)
    back = read_trace(path).initial()
    assert back == rs  # ids renumbered in arrival order, sessions in order of first use


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_csv_optional_columns_default_and_arrivals_are_sorted(tmp_path: Path) -> None:
    path = write(tmp_path / "t.csv", "arrival_s,input_tokens,output_tokens\n2.5,10,5\n0.5,20,7\n")
    rs = read_trace(path).initial()
    assert [(r.id, r.arrival_s, r.input_tokens) for r in rs] == [(0, 0.5, 20), (1, 2.5, 10)]
    assert all(r.tier == "standard" and r.session is None and r.prefix_tokens == 0 for r in rs)


def test_jsonl_null_session_and_blank_lines(tmp_path: Path) -> None:
    text = (
        '{"arrival_s": 1, "input_tokens": 10, "output_tokens": 5, "session": null}\n\n'
        '{"arrival_s": 0, "input_tokens": 30, "output_tokens": 5, "session": 9,'
        ' "prefix_tokens": 12, "tier": "flex"}\n'
    )
    rs = read_trace(write(tmp_path / "t.jsonl", text)).initial()
    assert rs[0].tier == "flex" and rs[0].session == 0 and rs[0].prefix_tokens == 12
    assert rs[1].session is None


def test_sessions_are_numbered_from_the_shared_ids(tmp_path: Path) -> None:
    path = write(tmp_path / "t.csv", f"{HEADER}\n0,10,5,standard,7,0\n1,20,5,standard,7,15\n")
    ids = Ids()
    ids.session(), ids.request()  # another part already took session 0 and request 0
    rs = read_trace(path, ids).initial()
    assert [(r.id, r.session) for r in rs] == [(1, 1), (2, 1)]
    assert ids.session() == 2  # one trace session took one id


def bad_csv_line(tmp_path: Path, row: str) -> str:
    good = "".join(f"{i},10,5,standard,,0\n" for i in range(5))
    path = write(tmp_path / "trace.csv", f"{HEADER}\n{good}{row}\n")
    with pytest.raises(ConfigError) as e:
        read_trace(path)
    return e.value.message


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (
            "6,10,abc,standard,,0",
            "trace.csv:7: output_tokens: expected a positive integer, got 'abc'",
        ),
        ("6,0,5,standard,,0", "trace.csv:7: input_tokens: expected a positive integer, got '0'"),
        ("x,10,5,standard,,0", "trace.csv:7: arrival_s: expected seconds >= 0"),
        ("-1,10,5,standard,,0", "trace.csv:7: arrival_s"),
        ("6,10,5,premium,,0", "trace.csv:7: tier: unknown tier 'premium'"),
        ("6,10,5,relatime,,0", "did you mean 'realtime'"),
        ("6,10,5,standard,-2,0", "trace.csv:7: session: expected an integer >= 0"),
        ("6,10,5,standard,,11", "trace.csv:7: prefix_tokens: 11 exceeds input_tokens 10"),
        ("6,10,5,standard", "trace.csv:7: expected 6 fields, got 4"),
    ],
)
def test_bad_csv_line_names_file_line_and_column(tmp_path: Path, row: str, message: str) -> None:
    assert message in bad_csv_line(tmp_path, row)


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ("arrival_s,input_tokens", "trace.csv:1: missing column 'output_tokens'"),
        ("arrival_s,input_tokens,ouput_tokens", "did you mean 'output_tokens'"),
        ("", "missing column 'arrival_s'"),
    ],
)
def test_bad_csv_header(tmp_path: Path, header: str, message: str) -> None:
    path = write(tmp_path / "trace.csv", f"{header}\n")
    with pytest.raises(ConfigError, match=message):
        read_trace(path)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"arrival_s": 0, "input_tokens": 5}', "trace.jsonl:2: missing key 'output_tokens'"),
        ('{"arrival_s": 0, "input_tokens": 5, "output_tokens": true}', "trace.jsonl:2: output_"),
        ('{"arrival_s": 0, "input_tokens": 5, "output_tokens": 2.5}', "positive integer"),
        ('{"arrival_s": 0, "input_tokens": 5, "output_tokens": 2, "tir": "flex"}', "'tier'"),
        ('{"arrival_s": 0, "input_tokens": 5, ', "trace.jsonl:2: invalid JSON"),
        ("[1, 2, 3]", "trace.jsonl:2: expected a JSON object"),
    ],
)
def test_bad_jsonl_line_names_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    good = '{"arrival_s": 0, "input_tokens": 5, "output_tokens": 5}\n'
    path = write(tmp_path / "trace.jsonl", good + line + "\n")
    with pytest.raises(ConfigError, match=message):
        read_trace(path)


def test_unknown_suffix_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"trace\.parquet: unknown trace format"):
        read_trace(tmp_path / "trace.parquet")
    with pytest.raises(ConfigError, match=r"nope\.csv: cannot read trace"):
        read_trace(tmp_path / "nope.csv")
    with pytest.raises(ConfigError, match="cannot write trace"):
        write_trace(tmp_path / "no_such_dir" / "t.jsonl", [])
