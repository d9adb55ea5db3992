"""Every model's routed backends, built once per process on first use.

The pipeline and the guard ask `Backends.for_model(model, route)` for a model's
RoutedBackend; it is built from the models config the first time (each endpoint's
backend, its routing state, its fallbacks' endpoints) and kept. The upstream HTTP pool
(aiohttp) and SageMaker's client are created on the first request that forwards, so a
function that never forwards (ApiFunction) never loads them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from gateway.backends.base import Backend
from gateway.backends.health import EndpointState
from gateway.backends.routing import RoutedBackend, Router, Target
from gateway.backends.wire import WireRoute
from gateway.models.registry import ModelConfig, ModelRegistry, OpenAIEndpoint, Upstream
from gateway.settings import Settings

if TYPE_CHECKING:
    from gateway.backends.load import LoadSampler
    from gateway.backends.openai_http import HttpPool


class EndpointTracer(Protocol):
    def traced(self, backend: Backend, *, model: str, endpoint: str) -> Backend: ...


class SageMakerClients(Protocol):
    sagemaker_config: Any

    @property
    def sagemaker_runtime(self) -> Any: ...


class Backends:
    """The process's backends: one RoutedBackend per (model, route)."""

    def __init__(
        self,
        *,
        settings: Settings,
        registry: ModelRegistry,
        router: Router,
        tracer: EndpointTracer,
        aws: SageMakerClients,
    ) -> None:
        self._settings = settings
        self._registry = registry
        self.router = router
        self._tracer = tracer
        self._aws = aws
        self._routed: dict[tuple[str, str], RoutedBackend] = {}
        self._http: HttpPool | None = None
        # Each OpenAI-compatible endpoint's /metrics, sampled in the background once a
        # request has been routed (backends/load.py); made with the first such endpoint.
        self.sampler: LoadSampler | None = None

    def for_model(self, model: ModelConfig, route: WireRoute) -> RoutedBackend:
        """The model's backend for `route`: its endpoints, then its fallbacks'."""
        backend = self._routed.get((model.id, route.name))
        if backend is None:
            tiers = [self._targets(model, route, fallback=False)]
            for fallback_id in model.fallbacks:
                fallback = self._registry.get(fallback_id)
                if fallback is not None and fallback.serves(route.name):
                    tiers.append(self._targets(fallback, route, fallback=True))
            backend = RoutedBackend(router=self.router, tiers=tiers)
            self._routed[(model.id, route.name)] = backend
        if self.sampler is not None and len(backend.targets) > 1:
            self.sampler.start()
        return backend

    @property
    def http(self) -> HttpPool:
        """The upstream HTTP pool, created (and aiohttp imported) on first use."""
        if self._http is None:
            from gateway.backends.openai_http import HttpPool

            self._http = HttpPool(self._settings)
        return self._http

    async def close(self) -> None:
        if self.sampler is not None:
            await self.sampler.close()
        if self._http is not None:
            await self._http.close()

    def reset_connections(self) -> HttpPool | None:
        """Forget the upstream pool (after a SnapStart restore its sockets are dead); the
        next request opens a new one. The old pool is returned for the caller to close on
        the event loop. The backends built so far hold the old pool: they are dropped too
        (the routing state is the router's, kept), else the next request would reopen a
        session in the old pool that nothing closes."""
        stale, self._http = self._http, None
        self._routed = {}
        return stale

    def _targets(self, model: ModelConfig, route: WireRoute, *, fallback: bool) -> list[Target]:
        targets = []
        for upstream in model.endpoints:
            state = self.router.state(
                model.id,
                upstream.label,
                weight=upstream.weight,
                max_concurrency=upstream.max_concurrency,
            )
            backend = self._tracer.traced(
                self._endpoint_backend(upstream, route), model=model.id, endpoint=upstream.label
            )
            if isinstance(upstream, OpenAIEndpoint):
                self._watch(upstream, upstream.model or model.id, state)
            label = f"{model.id}/{upstream.label}" if fallback else upstream.label
            targets.append(Target(state, backend, upstream.model or model.id, label))
        return targets

    def _watch(self, upstream: OpenAIEndpoint, model: str, state: EndpointState) -> None:
        if self.sampler is None:
            from gateway.backends.load import LoadSampler  # aiohttp: only once forwarding

            self.sampler = LoadSampler(
                interval=self.router.policy.load_sample_seconds, store=self.router.loads
            )
        self.sampler.watch(metrics_url(upstream), model, state)

    def _endpoint_backend(self, upstream: Upstream, route: WireRoute) -> Backend:
        # Imported here: only a request that forwards needs a backend's dependencies.
        if isinstance(upstream, OpenAIEndpoint):
            from gateway.backends.openai_http import OpenAIBackend

            return OpenAIBackend(upstream=upstream, pool=self.http, route=route)
        from gateway.backends.sagemaker import SageMakerBackend, client_config

        if self._aws.sagemaker_config is None:
            self._aws.sagemaker_config = client_config(self._settings)
        aws = self._aws
        return SageMakerBackend(
            upstream=upstream,
            get_client=lambda: aws.sagemaker_runtime,  # built once, in a worker thread
            max_concurrency=self._settings.upstream_max_connections,
            route=route,
        )


def metrics_url(upstream: OpenAIEndpoint) -> str:
    """The server's Prometheus page: vLLM serves `/metrics` beside `/v1`, not under it."""
    base = upstream.base_url.rstrip("/")
    return base.removesuffix("/v1") + "/metrics"
