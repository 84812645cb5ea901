"""A JSON body is read whole, in any chunks, and refused for what it is, not how it came."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from starlette.requests import Request

from tokenfactory.errors import BadInput, PayloadTooLarge, UnsupportedMediaType
from tokenfactory.gateway.body import parse_json, read_json


def read(chunks: list[bytes], headers: dict[str, str], limit: int = 1000) -> Any:
    """read_json over a request whose body arrives in `chunks`."""
    messages = [
        {"type": "http.request", "body": c, "more_body": i < len(chunks) - 1}
        for i, c in enumerate(chunks)
    ]

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/",
        "query_string": b"",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
    }
    return asyncio.run(read_json(Request(scope, receive), limit))


def test_a_body_in_chunks_reads_as_one() -> None:
    body = [b'{"messages": [{"content": "h', b"i\\u00e9", b'"}], "n": 1}']
    want = {"messages": [{"content": "hié"}], "n": 1}
    for headers in ({}, {"Content-Type": "application/json; charset=UTF-8"}):
        assert read(body, headers) == want
    assert read([b'{"a": 1}'], {"Content-Type": "application/vnd.x+json"}) == {"a": 1}


def test_a_body_over_the_limit_is_refused_declared_or_not() -> None:
    with pytest.raises(PayloadTooLarge):
        read([b"[1]"], {"Content-Length": "1001"})
    with pytest.raises(PayloadTooLarge):
        read([b"[" + b"1," * 300, b"1," * 300 + b"1]"], {})
    assert read([b"[1]"], {"Content-Length": "3"}) == [1]


@pytest.mark.parametrize(
    "media", ["text/plain", "application/json; charset=latin-1", "application/jsonx"]
)
def test_a_body_that_is_not_utf8_json_by_its_type_is_refused(media: str) -> None:
    with pytest.raises(UnsupportedMediaType):
        read([b"{}"], {"Content-Type": media})


def test_a_lone_surrogate_is_refused_wherever_its_escape_is() -> None:
    for raw in (
        b'{"a": "\\ud800"}',
        b'{"\\udfff": 1}',
        b'[[{"x": ["ok", "\\uD83D lone"]}]]',
    ):
        with pytest.raises(BadInput, match="lone surrogate"):
            parse_json(raw)
    # A pair is one character; an escaped backslash before a u is no escape at all.
    assert parse_json(b'["\\ud83d\\ude00", "\\\\ud800"]') == ["\U0001f600", "\\ud800"]
