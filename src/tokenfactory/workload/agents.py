"""Agent loops: many model calls in a row, each reading all before it plus a tool result."""

from __future__ import annotations

import math

import numpy as np

from tokenfactory.errors import BadInput
from tokenfactory.workload.checks import require_count, require_low
from tokenfactory.workload.lengths import Length, as_length
from tokenfactory.workload.loops import ContextLoops, start_times
from tokenfactory.workload.mix import TierMix
from tokenfactory.workload.request import Ids


class AgentLoops(ContextLoops):
    """`agents` loops of `steps` calls; the next call is sent the moment the last one ends.

    The first prompt is system + task; each later prompt is the previous prompt + the
    previous output + a tool result. A step is a long reasoning step with probability
    `reasoning_share`, else a short tool call. A failed step ends the agent's loop.
    """

    def __init__(
        self,
        agents: int,
        rate: float | None,
        steps: Length,
        system_tokens: int | Length,
        task_tokens: int | Length,
        tool_output_tokens: Length,
        call_output_tokens: Length,
        reasoning_output_tokens: Length,
        reasoning_share: float,
        mix: TierMix,
        rng: np.random.Generator,
        ids: Ids,
    ) -> None:
        system, task = as_length(system_tokens), as_length(task_tokens)
        require_count("agent loops: agents", agents)
        require_low("agent loops: steps", steps)
        require_low("agent loops: system_tokens", system, 0)
        require_low("agent loops: task_tokens", task)
        require_low("agent loops: tool_output_tokens", tool_output_tokens, 0)
        require_low("agent loops: call_output_tokens", call_output_tokens)
        require_low("agent loops: reasoning_output_tokens", reasoning_output_tokens)
        if not (math.isfinite(reasoning_share) and 0 <= reasoning_share <= 1):
            raise BadInput(f"agent loops: reasoning_share must be in [0, 1], got {reasoning_share}")
        starts = start_times(rate, agents, rng, "agent loops")
        n_steps = steps.sample(rng, agents)
        first_prompt = system.sample(rng, agents) + task.sample(rng, agents)
        tiers = mix.sample(rng, agents)
        total = int(n_steps.sum())
        tool = tool_output_tokens.sample(rng, total)
        # Both kinds of output are drawn for every step and one is kept: two vectorised
        # draws are far cheaper than a draw per step.
        calls = call_output_tokens.sample(rng, total)
        reasoning = reasoning_output_tokens.sample(rng, total)
        outputs = np.where(rng.random(total) < reasoning_share, reasoning, calls)
        super().__init__(
            starts=starts,
            first_prompt=first_prompt,
            steps=n_steps,
            added=tool,
            outputs=outputs,
            delays=None,  # no think time: an agent calls again as soon as its tool returns
            tiers=tiers,
            kind="agent",
            ids=ids,
        )
