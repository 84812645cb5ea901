"""Streamed events carry any text an engine sends, as JSON a client decodes back to it;
request ids end in a random version 4 UUID, as `uuid.uuid4().hex` writes it."""

from __future__ import annotations

import json
import uuid

from tokenfactory.gateway.generate import _event, _uuid4_hex


def test_an_event_carries_any_text_even_a_lone_surrogate() -> None:
    # orjson writes UTF-8, which has no lone surrogate: that one goes out as a JSON escape.
    for text in ("plain", "café ☕ 猫", "\ud800 lone", ""):
        event = _event({"delta": {"content": text}})
        assert event.startswith(b"data: ") and event.endswith(b"\n\n")
        assert json.loads(event.removeprefix(b"data: ")) == {"delta": {"content": text}}


def test_a_request_id_is_a_fresh_uuid4() -> None:
    ids = [_uuid4_hex() for _ in range(1000)]
    assert len(set(ids)) == len(ids)
    for text in ids:
        u = uuid.UUID(hex=text)
        assert u.version == 4 and u.variant == uuid.RFC_4122 and u.hex == text
    # Every bit outside the version and variant is random: each is seen both ways.
    fixed = uuid.UUID(int=(0xF << 76) | (0x3 << 62)).int
    ors, ands = 0, (1 << 128) - 1
    for text in ids:
        ors |= int(text, 16)
        ands &= int(text, 16)
    assert ors | fixed == (1 << 128) - 1 and ands & ~fixed == 0
