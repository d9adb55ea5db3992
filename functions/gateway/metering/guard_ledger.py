"""What a request's guard screenings add up to: its calls (with their own route trace),
tokens, time and decision. The Meter writes it into the request's usage record's guard
fields; the model's own fields never see the guard's calls."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from gateway.backends.attempts import RouteTrace
from gateway.usage import UsageRecord


class GuardAction(StrEnum):
    """What the screenings of one request decided, in the record's `guard_action`."""

    PASSED = "passed"
    BLOCKED_INPUT = "blocked_input"
    BLOCKED_OUTPUT = "blocked_output"
    # The guard failed or missed its deadline: served anyway (open) or refused (closed).
    FAILED_OPEN = "failed_open"
    FAILED_CLOSED = "failed_closed"


@dataclass
class GuardLedger:
    """Every guard call of one request: its tokens, time, routing and outcome."""

    guard_model: str
    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_ms: float = 0.0
    input_latency_ms: float | None = None
    action: GuardAction = GuardAction.PASSED
    # Categories the guard reported (blocking or not) and those that blocked.
    flagged: list[str] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)
    error: str | None = None
    # The guard's own calls across its endpoints (never the model's trace).
    trace: RouteTrace = field(default_factory=RouteTrace)

    def add_call(self, *, prompt_tokens: int, completion_tokens: int, latency_ms: float) -> None:
        self.calls += 1
        self.prompt_tokens += prompt_tokens
        self.completion_tokens += completion_tokens
        self.latency_ms += latency_ms

    def note(self, categories: Sequence[str], blocked: Sequence[str]) -> None:
        self.flagged.extend(c for c in categories if c not in self.flagged)
        self.blocked.extend(c for c in blocked if c not in self.blocked)

    def apply(self, record: UsageRecord) -> None:
        """Write the decision into the request's usage record (before it is stored)."""
        record.guard_model = self.guard_model
        record.guard_action = self.action.value
        record.guard_calls = self.calls
        record.guard_endpoint = self.trace.endpoint
        record.guard_attempts = self.trace.attempts or None
        record.guard_prompt_tokens = self.prompt_tokens
        record.guard_completion_tokens = self.completion_tokens
        record.guard_latency_ms = round(self.latency_ms, 3)
        record.guard_input_latency_ms = (
            round(self.input_latency_ms, 3) if self.input_latency_ms is not None else None
        )
        record.guard_categories = ",".join(self.flagged) or None
        record.guard_blocked = ",".join(self.blocked) or None
        record.guard_error = self.error
