import tomllib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tokenfactory.config import Located, label, split_path
from tokenfactory.errors import ConfigError

TEXT = """\
# a comment with [fake] and key = 1
top = 1
[hardware]
gpu = "H200-SXM"   # trailing comment
gpus = 8
[workload]
qps = 5.0
input_tokens = { dist = "lognormal", mean = 300 }
note = "a # inside a string"
after_note = 2
[[workload.mix]]
tier = "realtime"
[[workload.mix]]
tier = "standard"
share = 0.8
[workload.sessions]
turns.mean = 5
"quoted key" = 1
'literal.key' = 2
[tiers.realtime]
ttft_ms = 300
text = \"\"\"
[not_a_table]
not_a_key = 1
\"\"\"
[[a]]
[[a.b]]
x = 1
[[a.b]]
x = 2
[[a]]
[[a.b]]
x = 3
[a.c]
y = 4
[arrays]
items = [
  { tier = "realtime", share = 0.2 },
  { tier = "standard", share = 0.8 },
]
names = [
  "a",   # a comment, with a comma
  "b, c",
]
flat = [1, 2, [3, 4]]
z = 9
"""


def test_the_text_is_valid_toml() -> None:
    data = tomllib.loads(TEXT)
    assert data["a"][1]["c"]["y"] == 4
    assert data["arrays"]["names"] == ["a", "b, c"]


@pytest.fixture
def located() -> Located:
    return Located("scenario.toml", TEXT)


@pytest.mark.parametrize(
    ("table", "key", "line"),
    [
        ((), "top", 2),
        ("hardware", None, 3),
        ("hardware", "gpu", 4),
        ("hardware", "gpus", 5),
        ("workload", "qps", 7),
        ("workload", "after_note", 10),
        ("workload.mix", None, 11),
        ("workload.mix[0]", "tier", 12),
        ("workload.mix[1]", None, 13),
        ("workload.mix[1]", "share", 15),
        (("workload", "mix", 1), "tier", 14),
        ("workload.sessions", "turns", 17),
        ("workload.sessions", "turns.mean", 17),
        ("workload.sessions", "quoted key", 18),
        (("workload", "sessions", "literal.key"), None, 19),
        ("tiers", None, 20),
        ("tiers.realtime", "ttft_ms", 21),
        ("a[0].b[1]", "x", 30),
        ("a[1].b[0]", "x", 33),
        ("a[1].c", "y", 35),
        ("arrays", "items", 37),
        ("arrays.items[0]", None, 38),
        ("arrays.items[1]", "share", 39),
        ("arrays.names[1]", None, 43),
        ("arrays.names[2]", None, 41),
        ("arrays", "flat", 45),
        ("arrays", "z", 46),
    ],
)
def test_line_of_written_keys(
    located: Located, table: str | tuple[str | int, ...], key: str | None, line: int
) -> None:
    assert located.line(table, key) == line


def test_keys_inside_inline_tables_fall_back_to_their_key(located: Located) -> None:
    assert located.line("workload", "input_tokens.mean") == 8
    assert located.line("arrays.items[0]", "share") == 38


def test_missing_keys_fall_back_to_the_table_header_then_line_1(located: Located) -> None:
    assert located.line("hardware", "tensor_parallel") == 3
    assert located.line("workload.mix[5]", "tier") == 11
    assert located.line("nowhere", "key") == 1


def test_multiline_strings_and_comments_hide_lookalikes(located: Located) -> None:
    assert located.line("not_a_table") == 1
    assert located.line("tiers.realtime", "not_a_key") == 20
    assert located.line("fake") == 1


def test_a_table_written_after_its_subtable_keeps_its_own_header() -> None:
    located = Located("s.toml", "[workload.sessions]\ncount = 1\n\n[workload]\nrequests = 2\n")
    assert located.line("workload") == 4
    assert located.line("workload", "requests") == 5
    assert located.line("workload", "qps") == 4


def test_dotted_keys_at_the_top_make_their_tables() -> None:
    located = Located("s.toml", '\nhardware.gpu = "B200"\nhardware.gpus = 2\n')
    assert located.line("hardware", "gpus") == 3
    assert located.line("hardware", "tensor_parallel") == 2


def test_where_and_error_name_file_line_table_and_key(located: Located) -> None:
    assert located.where("hardware", "gpus") == "scenario.toml:5"
    error = located.error("hardware", "gpus", "must be > 0, got 0")
    assert isinstance(error, ConfigError)
    assert error.message == "scenario.toml:5: [hardware] gpus: must be > 0, got 0"
    assert error.param == "hardware.gpus"
    assert str(located.error("workload.mix[1]", "share", "bad")) == (
        "scenario.toml:15: [[workload.mix]] #2 share: bad"
    )
    said = located.error("hardware", "gpus", "gpus = 8 is odd", name_key=False)
    assert said.message == "scenario.toml:5: [hardware] gpus = 8 is odd"
    assert located.error((), None, "no table").message == "scenario.toml:1: no table"


def test_split_path_and_label() -> None:
    assert split_path("workload.mix[1]") == ("workload", "mix", 1)
    assert split_path(("a", 0)) == ("a", 0)
    assert split_path("") == ()
    assert split_path(None) == ()
    assert label("engine") == "[engine]"
    assert label(("workload", "mix", 0)) == "[[workload.mix]] #1"
    assert label("a[1].b") == "[a[1].b]"
    assert label(()) == ""


@given(st.text(alphabet=st.sampled_from(list("[]{}=.,#'\"\\ \nab1")), max_size=80))
def test_any_text_scans_and_every_line_is_at_least_1(text: str) -> None:
    located = Located("s.toml", text)
    assert 1 <= located.line("a", "b") <= max(1, text.count("\n") + 1)
    assert 1 <= located.line(("a", 0, "b"), None) <= max(1, text.count("\n") + 1)
