"""Human chat sessions: turns separated by think time, each prompt carrying the whole chat."""

from __future__ import annotations

import numpy as np

from tokenfactory.workload.checks import require_count, require_low
from tokenfactory.workload.lengths import Length, as_length
from tokenfactory.workload.loops import ContextLoops, start_times
from tokenfactory.workload.mix import TierMix
from tokenfactory.workload.request import Ids


class ChatSessions(ContextLoops):
    """`sessions` chats; turn k+1 comes `think_s` after turn k ends, with a new user message.

    A turn's prompt is the previous prompt + the previous answer + the new message, and
    prefix_tokens is the previous prompt + answer. One tier per session; a failed turn ends
    the session (the user leaves).
    """

    def __init__(
        self,
        sessions: int,
        rate: float | None,
        turns: Length,
        think_s: Length,
        system_tokens: int | Length,
        user_tokens: Length,
        output_tokens: Length,
        mix: TierMix,
        rng: np.random.Generator,
        ids: Ids,
    ) -> None:
        system = as_length(system_tokens)
        require_count("chat sessions: sessions", sessions)
        require_low("chat sessions: turns", turns)
        require_low("chat sessions: think_s", think_s, 0)
        require_low("chat sessions: system_tokens", system, 0)
        require_low("chat sessions: user_tokens", user_tokens)
        require_low("chat sessions: output_tokens", output_tokens)
        starts = start_times(rate, sessions, rng, "chat sessions")
        n_turns = turns.sample(rng, sessions)
        systems = system.sample(rng, sessions)
        tiers = mix.sample(rng, sessions)
        total = int(n_turns.sum())
        users = user_tokens.sample(rng, total)
        outputs = output_tokens.sample(rng, total)
        think = think_s.sample_float(rng, total)
        first = np.cumsum(n_turns) - n_turns
        super().__init__(
            starts=starts,
            first_prompt=systems + users[first],
            steps=n_turns,
            added=users,
            outputs=outputs,
            delays=think,
            tiers=tiers,
            kind="chat",
            ids=ids,
        )
