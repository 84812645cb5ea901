"""Chat messages of a planned size, and the growing context of sessions and agent loops.

A prompt of n tokens is n short English words, each three letters and a space: one token
in common BPE vocabularies and exactly one for the twin engine (four characters a token).
Each loop's words start at a different place, so different sessions share no prefix
beyond what the workload says. The assistant turns in a loop's history are filler of the
size the workload planned, not the endpoint's own text, so every prompt is as long as the
workload says on any endpoint (an engine's prefix cache still reuses the earlier prompt).
"""

from __future__ import annotations

from tokenfactory.workload import Request

WORDS = (
    "cat",
    "dog",
    "sun",
    "sea",
    "map",
    "car",
    "red",
    "big",
    "old",
    "new",
    "hot",
    "top",
    "one",
    "two",
    "six",
    "ten",
    "art",
    "bus",
    "cup",
    "day",
    "egg",
    "fan",
    "gas",
    "hat",
    "ice",
    "jam",
    "key",
    "leg",
    "man",
    "net",
    "oil",
    "pen",
    "rat",
    "sky",
    "tea",
    "van",
    "war",
    "box",
    "cow",
    "dry",
    "eye",
    "fix",
    "gun",
    "hen",
    "ink",
    "job",
    "kid",
    "lip",
    "mud",
    "nut",
    "owl",
    "pig",
    "rod",
    "sad",
    "toy",
    "use",
    "wet",
    "yes",
    "zoo",
    "arm",
)

Message = dict[str, str]


def filler(n: int, key: int) -> str:
    """`n` words, starting at a place that depends on `key`."""
    start = (key * 7919) % len(WORDS)
    return "".join(WORDS[(start + i) % len(WORDS)] + " " for i in range(n))


class Conversations:
    """The messages each live loop has sent so far, to grow its next prompt from."""

    def __init__(self) -> None:
        self._history: dict[int, tuple[list[Message], int]] = {}  # session -> (messages, input)

    def messages(self, r: Request) -> list[Message]:
        """The messages for `r`: a fresh prompt, or its loop's history plus the new turn."""
        past = None if r.session is None else self._history.get(r.session)
        # The previous step's planned output: what the prefix holds beyond its prompt.
        answer = -1 if past is None else r.prefix_tokens - past[1]
        if past is None or r.prefix_tokens == 0 or answer < 0:
            messages = [{"role": "user", "content": filler(r.input_tokens, r.id)}]
        else:
            added = r.input_tokens - r.prefix_tokens
            messages = [
                *past[0],
                {"role": "assistant", "content": filler(answer, r.id)},
                {"role": "user", "content": filler(added, r.id + 1)},
            ]
        if r.session is not None:
            self._history[r.session] = (messages, r.input_tokens)
        return messages

    def end(self, session: int | None) -> None:
        """Forget a loop that will send nothing more."""
        if session is not None:
            self._history.pop(session, None)

    @property
    def live(self) -> int:
        """Loops with a history kept."""
        return len(self._history)
