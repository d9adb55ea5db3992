"""What this instance knows of each endpoint, and the weighted power-of-two-choices pick.

Per endpoint: requests in flight from this instance, an EWMA of its time to first token,
its recent failures and who witnessed them (for the cooldown rule) and a Retry-After it
asked for. docs/ROUTING.md explains the choice.
"""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

# Weight of the newest TTFT sample in the moving average.
EWMA_ALPHA = 0.3
# An endpoint's TTFT average fades toward nothing with this time constant (seconds) while
# no new sample arrives, as Finagle's and Linkerd's peak-EWMA do: one slow answer (a cold
# start) must not keep an endpoint out of the draw forever, since only traffic to it
# could otherwise correct the figure.
EWMA_DECAY_SECONDS = 10.0
# Past this age the average is forgotten: the endpoint is drawn by weight alone again.
EWMA_STALE_SECONDS = 30.0
# The second candidate wins only when its cost is below this share of the first's, so
# small latency differences do not bend the configured weights.
SWITCH_RATIO = 0.8
# A load sampled from the endpoint's /metrics (backends/load.py) counts this long.
LOAD_FRESH_SECONDS = 5.0
# The bounded-load check (backends/affinity.py) reads the load averaged over about this
# long: a conversation stays on its replica through the moment-to-moment noise of a few
# requests more or less, and leaves it when the replica stays busier (a slow replica, a
# hot prefix).
LOAD_SETTLE_SECONDS = 2.0


@dataclass(frozen=True)
class EndpointLoad:
    """What the server reported: sequences running and waiting, and the fraction of its
    KV cache in use, sampled at `at` (time.monotonic); `mine`: this instance's requests
    in flight to it when the figures arrived (the report counts them already)."""

    running: float
    waiting: float
    kv_usage: float
    at: float
    mine: float = 0.0


@dataclass
class EndpointState:
    model: str
    name: str
    weight: float
    max_concurrency: int | None = None
    in_flight: int = 0
    ttft_ewma: float | None = None
    ttft_at: float = 0.0
    # Earliest time the endpoint should be tried again, as its Retry-After asked (capped):
    # other endpoints go first until then, but it is never refused outright.
    not_before: float = 0.0
    # Recent failures: (when, witness). A witness is the caller's key id, so one key's
    # failing requests count once (routing.py's rule).
    failures: deque[tuple[float, object]] = field(default_factory=deque)
    # The server's own report of its load (backends/load.py), if it has /metrics.
    load: EndpointLoad | None = None
    # queue() averaged over time (settled()), and when it was last updated.
    settled_load: float = 0.0
    settled_at: float | None = None

    @property
    def full(self) -> bool:
        return self.max_concurrency is not None and self.in_flight >= self.max_concurrency

    def observe_ttft(self, seconds: float, now: float) -> None:
        current = self.ttft(now)
        self.ttft_ewma = seconds if current is None else current + EWMA_ALPHA * (seconds - current)
        self.ttft_at = now

    def ttft(self, now: float) -> float | None:
        """The TTFT average, faded by the time since its last sample."""
        age = now - self.ttft_at
        if self.ttft_ewma is None or age > EWMA_STALE_SECONDS:
            return None
        return self.ttft_ewma * math.exp(-max(age, 0.0) / EWMA_DECAY_SECONDS)

    def queue(self, now: float) -> float:
        """Requests at the server: the other instances' as its fresh report counted them
        (running and waiting, less this instance's requests in flight at the time), plus
        this instance's in flight now. The report lags: this instance's requests that
        ended since are no longer counted, and those sent since are; without a fresh
        report, this instance's in flight alone."""
        load = self.load
        if load is None or now - load.at > LOAD_FRESH_SECONDS:
            return float(self.in_flight)
        others = max(load.running + load.waiting - load.mine, 0.0)
        return others + self.in_flight

    def settled(self, now: float) -> float:
        """The queue averaged over the last LOAD_SETTLE_SECONDS or so (an exponential
        average in time, updated at each call): an instance that routes seldom reads
        what the queue is now."""
        current = self.queue(now)
        if self.settled_at is None:
            self.settled_load = current
        else:
            share = 1.0 - math.exp(-max(now - self.settled_at, 0.0) / LOAD_SETTLE_SECONDS)
            self.settled_load += share * (current - self.settled_load)
        self.settled_at = now
        return self.settled_load

    def succeeded(self) -> None:
        self.failures.clear()

    def failed(self, now: float, *, window: float, allowed: int, witness: object) -> bool:
        """Count a failure seen by `witness`; True when `allowed` distinct witnesses
        have seen the endpoint fail within `window` (then the count starts again)."""
        self.failures.append((now, witness))
        while self.failures and self.failures[0][0] <= now - window:
            self.failures.popleft()
        if len({seen for _, seen in self.failures}) >= allowed:
            self.failures.clear()
            return True
        return False


def _cost(state: EndpointState, ttft: float | None, typical_ttft: float, now: float) -> float:
    """Peak-EWMA's cost: expected wait for a first token, times the queue ahead of us (the
    server's own report where it is fresh, else this instance's requests in flight)."""
    return (state.queue(now) + 1) * max(ttft if ttft is not None else typical_ttft, 1e-6)


def _weighted_index(weights: Sequence[float], rng: random.Random) -> int:
    point = rng.random() * sum(weights)
    for index, weight in enumerate(weights):
        point -= weight
        if point < 0:
            return index
    return len(weights) - 1


def choose(candidates: Sequence[EndpointState], rng: random.Random, *, now: float) -> EndpointState:
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
    ttft_a, ttft_b = a.ttft(now), b.ttft(now)
    known = [t for t in (ttft_a, ttft_b) if t is not None]
    typical = sum(known) / len(known) if known else 1.0
    cheaper = _cost(b, ttft_b, typical, now) < SWITCH_RATIO * _cost(a, ttft_a, typical, now)
    return b if cheaper else a
