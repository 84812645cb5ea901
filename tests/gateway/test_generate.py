"""Streamed events carry any text an engine sends, as JSON a client decodes back to it."""

from __future__ import annotations

import json

from tokenfactory.gateway.generate import _event


def test_an_event_carries_any_text_even_a_lone_surrogate() -> None:
    # orjson writes UTF-8, which has no lone surrogate: that one goes out as a JSON escape.
    for text in ("plain", "café ☕ 猫", "\ud800 lone", ""):
        event = _event({"delta": {"content": text}})
        assert event.startswith(b"data: ") and event.endswith(b"\n\n")
        assert json.loads(event.removeprefix(b"data: ")) == {"delta": {"content": text}}
