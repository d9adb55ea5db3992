"""What this instance knows of each endpoint, and the weighted power-of-two-choices pick.

Per endpoint: requests in flight from this instance, an EWMA of its time to first token,
its recent failures (for the cooldown rule) and a Retry-After it asked for. docs/ROUTING.md
explains the choice.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

# Weight of the newest TTFT sample in the moving average.
EWMA_ALPHA = 0.3
# The second candidate wins only when its cost is below this share of the first's, so
# small latency differences do not bend the configured weights.
SWITCH_RATIO = 0.8


@dataclass
class EndpointState:
    model: str
    name: str
    weight: float
    max_concurrency: int | None = None
    in_flight: int = 0
    ttft_ewma: float | None = None
    # Earliest time the endpoint may be tried again, as its Retry-After asked.
    not_before: float = 0.0
    failures: deque[float] = field(default_factory=deque)

    @property
    def full(self) -> bool:
        return self.max_concurrency is not None and self.in_flight >= self.max_concurrency

    def observe_ttft(self, seconds: float) -> None:
        if self.ttft_ewma is None:
            self.ttft_ewma = seconds
        else:
            self.ttft_ewma += EWMA_ALPHA * (seconds - self.ttft_ewma)

    def succeeded(self) -> None:
        self.failures.clear()

    def failed(self, now: float, *, window: float, allowed: int) -> bool:
        """Count a failure; True when it makes `allowed` failures within `window`."""
        self.failures.append(now)
        while self.failures and self.failures[0] <= now - window:
            self.failures.popleft()
        if len(self.failures) >= allowed:
            self.failures.clear()
            return True
        return False


def _cost(state: EndpointState, typical_ttft: float) -> float:
    """Peak-EWMA's cost: expected wait for a first token, times the queue ahead of us."""
    ttft = state.ttft_ewma if state.ttft_ewma is not None else typical_ttft
    return (state.in_flight + 1) * max(ttft, 1e-6)


def _weighted_index(weights: Sequence[float], rng: random.Random) -> int:
    point = rng.random() * sum(weights)
    for index, weight in enumerate(weights):
        point -= weight
        if point < 0:
            return index
    return len(weights) - 1


def choose(candidates: Sequence[EndpointState], rng: random.Random) -> EndpointState:
    """Weighted power of two choices: two distinct endpoints drawn by weight; the second
    replaces the first only if it is clearly cheaper (fewer requests in flight here, or a
    faster recent first token). With equal loads this is a plain weighted draw."""
    if len(candidates) == 1:
        return candidates[0]
    weights = [c.weight for c in candidates]
    first = _weighted_index(weights, rng)
    rest = [i for i in range(len(candidates)) if i != first]
    second = rest[_weighted_index([weights[i] for i in rest], rng)]
    a, b = candidates[first], candidates[second]
    known = [c.ttft_ewma for c in (a, b) if c.ttft_ewma is not None]
    typical = sum(known) / len(known) if known else 1.0
    return b if _cost(b, typical) < SWITCH_RATIO * _cost(a, typical) else a
