"""Reading a JSON request body strictly: capped in size, UTF-8, standard JSON, real text.

Whatever a client sends, the answer is a clean 4xx: a body over the limit (413, read no
further), a Content-Type that is not JSON (415), bytes that are not UTF-8, JSON's
non-standard NaN and Infinity, nesting deeper than the parser's stack, or a string with a
lone surrogate, which no engine could encode (400).
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request
from starlette.requests import ClientDisconnect

from tokenfactory.errors import BadInput, PayloadTooLarge, UnsupportedMediaType


async def read_json(request: Request, limit: int) -> Any:
    """The request's JSON body, refused over `limit` bytes or when it is not clean JSON."""
    # Read straight from the scope and `receive`: Starlette's Headers lower-cases the name
    # and scans per lookup, its body stream is an async generator; this runs per request.
    media = declared = None
    for name, value in request.scope["headers"]:  # ASGI names are lower-case
        if name == b"content-type" and media is None:
            media = value
        elif name == b"content-length" and declared is None:
            declared = value
    if media is not None and media != b"application/json":  # absent: taken as JSON, as
        _check_media(media.decode("latin-1"))  # curl users often forget it
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"request body over {limit} bytes")
    chunks: list[bytes] = []
    size, more = 0, True
    while more:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunk: bytes = message.get("body", b"")
        more = message.get("more_body", False)
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"request body over {limit} bytes")
        chunks.append(chunk)
    return parse_json(chunks[0] if len(chunks) == 1 else b"".join(chunks))


def _check_media(media: str) -> None:
    """Refuse a Content-Type that is not JSON, or JSON in a charset other than UTF-8."""
    kind, *params = (p.strip().lower() for p in media.split(";"))
    if kind != "application/json" and not kind.endswith("+json"):
        raise UnsupportedMediaType(f"Content-Type {kind!r}: send application/json")
    charsets = [p.partition("=")[2].strip('"') for p in params if p.startswith("charset=")]
    if any(c not in ("utf-8", "utf8") for c in charsets):
        raise UnsupportedMediaType(f"Content-Type {media!r}: JSON bodies are UTF-8")


def parse_json(raw: bytes) -> Any:
    """`raw` as JSON, or BadInput saying why it is not acceptable JSON."""
    try:
        text = raw.decode("utf-8")
        value = _DECODER.decode(text)
    except UnicodeDecodeError as e:
        raise BadInput(f"request body is not UTF-8: {e}") from None
    except json.JSONDecodeError as e:
        raise BadInput(f"request body is not valid JSON: {e}") from None
    except RecursionError:
        raise BadInput("request body is not valid JSON: nested too deeply") from None
    # Strict UTF-8 decoding makes no surrogates; only a \u escape can, and most bodies have none.
    if "\\u" in text:
        _check_text(value)
    return value


def _no_constant(name: str) -> Any:
    raise BadInput(f"request body is not valid JSON: {name} is not a JSON number")


# Made once: json.loads given any option builds a new decoder per call, which costs more
# than decoding a chat request.
_DECODER = json.JSONDecoder(parse_constant=_no_constant)


def _check_text(value: Any) -> None:
    """Refuse strings (keys too) that are not valid Unicode: lone UTF-16 surrogates."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str) and not item.isascii():
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                raise BadInput("request body has a lone surrogate (\\ud800 to \\udfff)") from None
