"""A model's requests routed across its endpoints, with failover before the first byte.

`RoutedBackend` is a Backend (backends/base.py), so the services do not know routing
exists. Each request picks an endpoint by weighted power-of-two-choices (backends/health.py)
among those not cooled down, and moves to another endpoint (then to the model's fallbacks)
when an attempt fails before anything reached the client: a refused connection, a timeout
before the first token, 429 (its Retry-After honoured within the budget), 5xx, a SageMaker
throttle or model error. 400, 413 and 422 are the request's fault and are never retried,
and nothing is retried once a stream's first chunk has been handed on.

Cooldowns and Retry-Afters only steer: when no endpoint is left that is neither cooled
down nor backing off, the rest are tried anyway, with failover between them (Envoy's
panic mode). Only failures that distinct callers (keys) saw, or connections that could not
be made, cool an endpoint down (backends/faults.py). docs/ROUTING.md.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeVar

from gateway.backends.affinity import NO_HINT, Ring, RouteHint, bounded_pick
from gateway.backends.attempts import RouteTrace
from gateway.backends.health import choose
from gateway.backends.routed_stream import RoutedChunks, first_chunk
from gateway.backends.router import EndpointMetrics, Router, RoutingPolicy, Target
from gateway.errors import GatewayError, UpstreamError

__all__ = ["EndpointMetrics", "RouteHint", "RoutedBackend", "Router", "RoutingPolicy", "Target"]

logger = logging.getLogger(__name__)

T = TypeVar("T")


class RoutedBackend:
    """A model's route (chat, completions, embeddings) across `tiers` of targets: its own
    endpoints, then each fallback model's."""

    def __init__(self, *, router: Router, tiers: Sequence[Sequence[Target]]) -> None:
        self._router = router
        self._tiers = [list(tier) for tier in tiers if tier]
        self._models = sorted({t.state.model for tier in self._tiers for t in tier})
        self._count = sum(len(tier) for tier in self._tiers)
        self._rings = [
            Ring([t.state.name for t in tier], [t.state.weight for t in tier])
            for tier in self._tiers
        ]

    @property
    def targets(self) -> list[Target]:
        """Every target, in the order tiers are tried."""
        return [t for tier in self._tiers for t in tier]

    async def complete(
        self,
        body: dict[str, Any],
        *,
        trace: RouteTrace | None = None,
        tenant: str | None = None,
        hint: RouteHint = NO_HINT,
    ) -> dict[str, Any]:
        """One answer from the first endpoint that serves it. `trace` (the caller's record
        of the call) is filled in; `tenant`, the caller's key id, counts failures per key
        (Router.failed); `hint.prefix`, the key of the prompt's stable prefix, sends it
        where that prefix went before (backends/affinity.py)."""
        return await self._route(body, self._complete_once, trace or RouteTrace(), tenant, hint)

    async def open_stream(
        self,
        body: dict[str, Any],
        *,
        trace: RouteTrace | None = None,
        tenant: str | None = None,
        hint: RouteHint = NO_HINT,
    ) -> AsyncIterator[dict[str, Any]]:
        """A stream whose first chunk has arrived; `trace`, `tenant` and `hint` as for
        `complete`."""
        return await self._route(body, self._open_once, trace or RouteTrace(), tenant, hint)

    async def _complete_once(
        self, target: Target, body: dict[str, Any], _more: bool, _tenant: str | None
    ) -> dict[str, Any]:
        target.state.in_flight += 1
        try:
            result = await target.backend.complete(body)
        finally:
            target.state.in_flight -= 1
        target.state.succeeded()
        self._report(target, ok=True, failover=False, ttft=None)
        return result

    async def _open_once(
        self, target: Target, body: dict[str, Any], more: bool, tenant: str | None
    ) -> AsyncIterator[dict[str, Any]]:
        """Open the stream and wait for its first chunk, so that a hang or failure before
        it can still move to another endpoint (within the first-token timeout only when
        another attempt is possible)."""
        timeout = self._router.policy.first_token_timeout if more else None
        started = time.perf_counter()
        target.state.in_flight += 1
        try:
            first, chunks = await first_chunk(target.backend, body, within=timeout)
        except BaseException:
            target.state.in_flight -= 1
            raise
        ttft = time.perf_counter() - started
        target.state.observe_ttft(ttft, time.monotonic())
        self._report(target, ok=True, failover=False, ttft=ttft)
        return RoutedChunks(
            first,
            chunks,
            on_done=lambda: self._done(target),
            on_fail=lambda error: self._failed_midway(target, error, tenant),
        )

    def _done(self, target: Target) -> None:
        target.state.in_flight -= 1
        target.state.succeeded()

    async def _failed_midway(self, target: Target, error: GatewayError, tenant: str | None) -> None:
        """Not retried (the client has the first chunk), but it counts against the endpoint."""
        target.state.in_flight -= 1
        self._report(target, ok=False, failover=False, ttft=None)
        await self._router.failed(target.state, error, tenant=tenant)

    async def _route(
        self,
        body: dict[str, Any],
        attempt: Callable[[Target, dict[str, Any], bool, str | None], Awaitable[T]],
        trace: RouteTrace,
        tenant: str | None,
        hint: RouteHint,
    ) -> T:
        router = self._router
        deadline = router.clock() + router.policy.budget_seconds
        if self._count > 1:
            for model in self._models:
                await router.cooldowns.refresh(model)
        tried: set[int] = set()
        asked_to_wait: set[int] = set()  # tried, and answered with a Retry-After
        last: UpstreamError | None = None
        for number in range(router.policy.max_attempts):
            target = await self._pick(tried, asked_to_wait, deadline, hint)
            if target is None:
                break
            trace.attempts += 1
            trace.endpoint = target.label
            more = number + 1 < router.policy.max_attempts and self._others(target, tried)
            try:
                return await attempt(target, _body_for(body, target), more, tenant)
            except UpstreamError as exc:
                last = exc
                tried.add(id(target))
                if exc.headers.get("Retry-After") is not None:
                    asked_to_wait.add(id(target))
                self._report(target, ok=False, failover=True, ttft=None)
                trace.failovers += 1
                await router.failed(target.state, exc, tenant=tenant)
        # Every attempt failed: the last error goes to the client (a 429's Retry-After too).
        if last is None:
            raise UpstreamError("No endpoint of this model is available.", status_code=503)
        raise last

    async def _pick(
        self, tried: set[int], asked_to_wait: set[int], deadline: float, hint: RouteHint
    ) -> Target | None:
        router = self._router
        now = router.clock()
        for number, tier in enumerate(self._tiers):
            ready = [t for t in tier if id(t) not in tried and router.usable(t.state, now)]
            if ready:
                return self._choose(number, ready, hint)
        # An endpoint that told this request when to come back, within the budget. (Other
        # requests only skip it until then: they never wait for another's Retry-After.)
        waiting = [
            t
            for tier in self._tiers
            for t in tier
            if id(t) in asked_to_wait
            and now < t.state.not_before <= deadline
            and router.cooldowns.until(t.state.model, t.state.name) <= now
        ]
        if waiting:
            target = min(waiting, key=lambda t: t.state.not_before)
            asked_to_wait.discard(id(target))
            await router.sleep(target.state.not_before - now)
            return target
        # Panic (Envoy's panic threshold): no endpoint is left that is neither cooled down
        # nor backing off, so the others are tried anyway, tier by tier, with failover
        # between them. A cooldown steers traffic; it never refuses a request.
        for number, tier in enumerate(self._tiers):
            rest = [t for t in tier if id(t) not in tried]
            if rest:
                return self._choose(number, rest, hint)
        return None

    def _report(self, target: Target, *, ok: bool, failover: bool, ttft: float | None) -> None:
        # A model with one endpoint has its per-model metrics already (Telemetry.completed):
        # its successes cost no second EMF document; its failures are still reported.
        if self._count > 1 or not ok:
            self._router.report(target, ok=ok, failover=failover, ttft=ttft)

    def _others(self, target: Target, tried: set[int]) -> bool:
        """Whether another endpoint is left to try after `target`."""
        return any(t is not target and id(t) not in tried for tier in self._tiers for t in tier)

    def _choose(self, number: int, targets: list[Target], hint: RouteHint) -> Target:
        """Among a tier's `targets`: by the prefix's place on the ring, within the bounded
        load, when the request has a prefix key and affinity is on; else weighted P2C."""
        roomy = [t for t in targets if not t.state.full] or targets
        now = time.monotonic()
        if hint.prefix is not None and self._router.policy.affinity and len(roomy) > 1:
            tier = self._tiers[number]
            allowed = {id(t) for t in roomy}
            index = bounded_pick(
                self._rings[number],
                hint.prefix,
                loads=[t.state.settled(now) for t in tier],
                weights=[t.state.weight for t in tier],
                allowed=lambda i: id(tier[i]) in allowed,
                balance=self._router.policy.balance,
            )
            if index is not None:
                return tier[index]
        by_state = {id(t.state): t for t in roomy}
        state = choose([t.state for t in roomy], self._router.rng, now=now)
        return by_state[id(state)]


def _body_for(body: dict[str, Any], target: Target) -> dict[str, Any]:
    if body.get("model") == target.upstream_model:
        return body
    return {**body, "model": target.upstream_model}
