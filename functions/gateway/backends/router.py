"""This process's routing state: the policy (settings), every endpoint's EndpointState,
the shared cooldowns, and what counts a failure against an endpoint (routing.py routes a
request across them; docs/ROUTING.md)."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import anyio

from gateway.backends.affinity import BALANCE
from gateway.backends.base import Backend
from gateway.backends.cooldowns import CooldownCache
from gateway.backends.faults import witness
from gateway.backends.health import EndpointState
from gateway.backends.retry_after import retry_after_seconds
from gateway.errors import GatewayError
from gateway.settings import Settings

if TYPE_CHECKING:
    from gateway.backends.loadstore import LoadStore

logger = logging.getLogger(__name__)


class EndpointMetrics(Protocol):
    def endpoint_attempt(
        self, *, model: str, endpoint: str, ok: bool, failover: bool, ttft_ms: float | None
    ) -> None: ...


@dataclass(frozen=True)
class RoutingPolicy:
    max_attempts: int = 3
    budget_seconds: float = 5.0
    first_token_timeout: float = 60.0
    allowed_fails: int = 3
    failure_window: float = 60.0
    cooldown_seconds: float = 60.0
    # A request with a prefix key goes where its prefix went (backends/affinity.py);
    # off: weighted P2C for every request, as before.
    affinity: bool = True
    # The bounded-load factor c (backends/affinity.py, BALANCE): a replica takes its keys
    # while its load, with the request, is within c x its share of the total.
    balance: float = BALANCE
    # Seconds between samples of each endpoint's /metrics (backends/load.py), shared
    # through the usage table when the Router has a LoadStore; 0: none.
    load_sample_seconds: float = 1.0

    @classmethod
    def from_settings(cls, settings: Settings) -> RoutingPolicy:
        return cls(
            max_attempts=settings.routing_max_attempts,
            budget_seconds=settings.routing_budget_seconds,
            first_token_timeout=settings.upstream_first_token_timeout,
            allowed_fails=settings.endpoint_allowed_fails,
            failure_window=settings.endpoint_failure_window_seconds,
            cooldown_seconds=settings.endpoint_cooldown_seconds,
            affinity=settings.routing_affinity,
            load_sample_seconds=settings.endpoint_load_sample_seconds,
        )


@dataclass(frozen=True)
class Target:
    """One endpoint as a route's backend: its state, its backend, the model name it
    expects, and the name the usage record gives it."""

    state: EndpointState
    backend: Backend
    upstream_model: str
    label: str


class Router:
    """This process's routing state: every endpoint's EndpointState, shared cooldowns,
    and `loads`, the shared load items the LoadSampler reads and writes (None: each
    process samples for itself)."""

    def __init__(
        self,
        *,
        policy: RoutingPolicy,
        cooldowns: CooldownCache,
        loads: LoadStore | None = None,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        metrics: EndpointMetrics | None = None,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    ) -> None:
        self.policy = policy
        self.cooldowns = cooldowns
        self.loads = loads
        self.clock = clock
        self.rng = rng or random.Random()
        self.metrics = metrics
        self.sleep = sleep
        self._states: dict[tuple[str, str], EndpointState] = {}

    def state(
        self, model: str, name: str, *, weight: float, max_concurrency: int | None
    ) -> EndpointState:
        """The one state of this endpoint, shared by the model's routes and fallbacks."""
        key = (model, name)
        if key not in self._states:
            self._states[key] = EndpointState(model, name, weight, max_concurrency)
        return self._states[key]

    def usable(self, state: EndpointState, now: float) -> bool:
        """Neither cooled down nor backing off (as this instance knows): such endpoints
        go first, the others only when none is left (RoutedBackend._pick)."""
        return (
            state.not_before <= now and self.cooldowns.steered_until(state.model, state.name) <= now
        )

    async def failed(
        self, state: EndpointState, error: GatewayError, *, tenant: str | None = None
    ) -> None:
        """Count an attempt's failure against the endpoint. `tenant` is the caller's key
        id: a failure the request itself may have caused counts once per key, so one key
        cannot cool an endpoint down for everyone (None: an unknown caller, counted as one
        key). A Retry-After is honoured for at most the cooldown period and never counts."""
        now = self.clock()
        policy = self.policy
        wait = retry_after_seconds(error.headers.get("Retry-After"), now=now)
        if wait is not None:
            until = now + min(wait, policy.cooldown_seconds)
            state.not_before = max(state.not_before, until)
            if until > now:
                await self.cooldowns.backoff(
                    state.model, state.name, until=until, reason=error.code or ""
                )
        seen_by = witness(error, tenant=tenant)
        if seen_by is None:
            return
        if state.failed(
            now, window=policy.failure_window, allowed=policy.allowed_fails, witness=seen_by
        ):
            until = now + policy.cooldown_seconds
            logger.warning(
                "endpoint cooled down",
                extra={"model": state.model, "endpoint": state.name, "until": until},
            )
            await self.cooldowns.set(state.model, state.name, until=until, reason=error.code or "")

    def report(self, target: Target, *, ok: bool, failover: bool, ttft: float | None) -> None:
        if self.metrics is not None:
            self.metrics.endpoint_attempt(
                model=target.state.model,
                endpoint=target.state.name,
                ok=ok,
                failover=failover,
                ttft_ms=None if ttft is None else round(ttft * 1000, 3),
            )
