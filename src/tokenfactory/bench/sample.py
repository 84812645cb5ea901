"""What bench measured of one request: when it was sent, its tokens, how it ended."""

from __future__ import annotations

from dataclasses import dataclass, field

# How a request ended. `unfinished`: still running when --duration cut the run.
OK = "ok"
RATE_LIMITED = "rate_limited"  # HTTP 429: refused by a rate limit, budget or admission
HTTP_ERROR = "http_error"  # any other 4xx/5xx answer, or an error event mid-stream
TRANSPORT = "transport_error"  # no answer: connection refused, reset, timed out
UNFINISHED = "unfinished"
STATUSES = (OK, RATE_LIMITED, HTTP_ERROR, TRANSPORT, UNFINISHED)


@dataclass(slots=True)
class Sample:
    """One request as bench saw it; times in seconds from the start of the run."""

    id: int
    kind: str  # request | chat | agent
    tier: str  # the tier the workload asked for
    session: int | None
    arrival_s: float  # when the workload wanted it sent
    start_s: float  # when it was sent
    planned_input_tokens: int
    planned_output_tokens: int
    status: str = UNFINISHED
    end_s: float | None = None
    first_token_s: float | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    tokens_from: str = ""  # "usage" (the endpoint's count) or "counted" (content chunks)
    served_tier: str | None = None  # the response's service_tier, when it names one
    http_status: int | None = None
    error: str = ""
    gaps_s: list[float] = field(default_factory=list)  # between content chunks: ITL

    @property
    def ok(self) -> bool:
        """Whether the request completed."""
        return self.status == OK

    @property
    def ttft_s(self) -> float | None:
        """Time to first content token, from sending."""
        return None if self.first_token_s is None else self.first_token_s - self.start_s

    @property
    def e2e_s(self) -> float | None:
        """Sending to the last byte."""
        return None if self.end_s is None else self.end_s - self.start_s

    @property
    def tpot_s(self) -> float | None:
        """Time per output token after the first, as the simulator defines it."""
        if self.end_s is None or self.first_token_s is None:
            return None
        if self.completion_tokens <= 1:
            return 0.0
        return (self.end_s - self.first_token_s) / (self.completion_tokens - 1)
