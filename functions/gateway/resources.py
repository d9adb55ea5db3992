"""Everything a request needs, built once per process by the app factory.

Building it does no I/O and imports only what every route needs: AWS clients are built on
their first call (gateway.aws.LazyClient), the upstream HTTP pool (aiohttp) and each
backend on the first request that forwards, so a function that never forwards
(ApiFunction) never loads them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from gateway.aws import AwsClients, path_dynamodb_config
from gateway.backends import Backend
from gateway.backends.cooldowns import CooldownCache, CooldownStore
from gateway.backends.routing import RoutedBackend, Router, RoutingPolicy, Target
from gateway.backends.wire import CHAT, WireRoute
from gateway.chat.service import ChatService
from gateway.completions.service import CompletionService
from gateway.dynamodb_http import DynamoDBHttp
from gateway.embeddings.service import EmbeddingService
from gateway.guard import GuardService
from gateway.guard.metrics import BlockMetrics
from gateway.keys import KeyStore
from gateway.keys.auth import Authenticator
from gateway.limits import LimitStore
from gateway.metering import UsageSink
from gateway.models.registry import ModelConfig, ModelRegistry, OpenAIEndpoint, Upstream
from gateway.observability import Telemetry, Tracing
from gateway.serving import RouteDeps
from gateway.settings import Settings
from gateway.tokens import TokenizerStore
from gateway.usage import UsageStore

if TYPE_CHECKING:
    from gateway.backends.openai_http import HttpPool


@dataclass
class Resources:
    settings: Settings
    aws: AwsClients
    registry: ModelRegistry
    tokenizers: TokenizerStore
    keys: KeyStore
    authenticator: Authenticator
    usage: UsageStore
    limits: LimitStore
    telemetry: Telemetry
    # X-Ray (on inside Lambda only): DynamoDB calls and each upstream call.
    tracing: Tracing = field(default_factory=Tracing)
    started_at: float = field(default_factory=time.time)
    chat: ChatService = field(init=False)
    completions: CompletionService = field(init=False)
    embeddings: EmbeddingService = field(init=False)
    _backends: dict[tuple[str, str], Backend] = field(init=False, default_factory=dict)
    _http: HttpPool | None = field(init=False, default=None, repr=False)
    # Routing across each model's endpoints (backends/routing.py): one per process.
    router: Router = field(init=False)

    def __post_init__(self) -> None:
        self.router = Router(
            policy=RoutingPolicy.from_settings(self.settings),
            cooldowns=CooldownCache(
                store=CooldownStore(
                    client=self.aws.lazy_dynamodb(), table=self.settings.usage_table
                ),
                ttl=self.settings.endpoint_state_cache_seconds,
                deadline_seconds=self.settings.key_lookup_deadline_seconds,
            ),
            metrics=self.telemetry,
        )
        deps = RouteDeps(
            registry=self.registry,
            tokenizers=self.tokenizers,
            sink=UsageSink(usage=self.usage),
            telemetry=self.telemetry,
            limits=self.limits,
            audit_rate=self.settings.usage_audit_rate,
        )
        guard = GuardService(
            registry=self.registry,
            backend_for=self.backend_for,
            tokenizer_for=deps.tokenizer,
            metrics=BlockMetrics.from_settings(self.settings),
        )
        self.chat = ChatService(
            deps=deps,
            backend_for=self.backend_for,
            default_max_tokens=self.settings.default_max_tokens,
            guard=guard,
        )
        self.completions = CompletionService(
            deps=deps,
            backend_for=self.backend_for,
            default_max_tokens=self.settings.default_max_tokens,
            guard=guard,
        )
        self.embeddings = EmbeddingService(deps=deps, backend_for=self.backend_for)

    @classmethod
    def build(cls, settings: Settings, *, aws: AwsClients | None = None) -> Resources:
        aws = aws or AwsClients(
            dynamodb_config=path_dynamodb_config(
                connect_timeout=settings.dynamodb_connect_timeout,
                read_timeout=settings.dynamodb_read_timeout,
            ),
        )
        tracing = Tracing.from_settings(settings)
        registry = ModelRegistry.from_settings(settings, read_ssm_parameter=aws.read_ssm_parameter)
        dynamodb = aws.lazy_dynamodb()  # built on the first key lookup or usage write
        keys = KeyStore(client=dynamodb, table=settings.keys_table)
        return cls(
            settings=settings,
            aws=aws,
            registry=registry,
            tokenizers=TokenizerStore(settings),
            keys=keys,
            authenticator=Authenticator(
                store=keys,
                ttl=settings.key_cache_ttl_seconds,
                deadline_seconds=settings.key_lookup_deadline_seconds,
            ),
            usage=UsageStore(
                client=dynamodb,
                table=settings.usage_table,
                retention_days=settings.usage_retention_days,
                deadline_seconds=settings.usage_write_deadline_seconds,
                http=DynamoDBHttp(
                    endpoint=aws.dynamodb_endpoint,
                    connect_timeout=settings.dynamodb_connect_timeout,
                    read_timeout=settings.dynamodb_read_timeout,
                    tracer=tracing.aws_call("dynamodb"),
                ),
            ),
            limits=LimitStore(
                client=dynamodb,
                table=settings.usage_table,
                deadline_seconds=settings.admission_deadline_seconds,
            ),
            telemetry=Telemetry.from_settings(settings),
            tracing=tracing,
        )

    @property
    def http(self) -> HttpPool:
        """The upstream HTTP pool, created (and aiohttp imported) on first use."""
        if self._http is None:
            from gateway.backends.openai_http import HttpPool

            self._http = HttpPool(self.settings)
        return self._http

    async def close(self) -> None:
        """Close the upstream HTTP pool (if any request created it) and the usage writer's."""
        if self._http is not None:
            await self._http.close()
        await self.usage.close()

    def reset_connections(self) -> HttpPool | None:
        """Drop every pooled connection (after a SnapStart restore: a snapshot's sockets are
        dead); the next request opens new ones. AWS clients stay (their pools are cleared);
        the upstream pool is replaced on next use and the old one returned, for a caller
        on the event loop to close."""
        self.aws.close_connections()
        stale, self._http = self._http, None
        return stale

    def backend_for(self, model: ModelConfig, route: WireRoute = CHAT) -> Backend:
        backend = self._backends.get((model.id, route.name))
        if backend is None:
            tiers = [self._targets(model, route, fallback=False)]
            for fallback_id in model.fallbacks:
                fallback = self.registry.get(fallback_id)
                if fallback is not None and fallback.serves(route.name):
                    tiers.append(self._targets(fallback, route, fallback=True))
            backend = RoutedBackend(router=self.router, tiers=tiers)
            self._backends[(model.id, route.name)] = backend
        return backend

    def _targets(self, model: ModelConfig, route: WireRoute, *, fallback: bool) -> list[Target]:
        targets = []
        for upstream in model.endpoints:
            state = self.router.state(
                model.id,
                upstream.label,
                weight=upstream.weight,
                max_concurrency=upstream.max_concurrency,
            )
            backend = self.tracing.traced(
                self._endpoint_backend(upstream, route), model=model.id, endpoint=upstream.label
            )
            label = f"{model.id}/{upstream.label}" if fallback else upstream.label
            targets.append(Target(state, backend, upstream.model or model.id, label))
        return targets

    def _endpoint_backend(self, upstream: Upstream, route: WireRoute) -> Backend:
        # Imported here: only a request that forwards needs a backend's dependencies.
        if isinstance(upstream, OpenAIEndpoint):
            from gateway.backends.openai_http import OpenAIBackend

            return OpenAIBackend(upstream=upstream, pool=self.http, route=route)
        from gateway.backends.sagemaker import SageMakerBackend, client_config

        aws = self.aws
        if aws.sagemaker_config is None:
            aws.sagemaker_config = client_config(self.settings)
        return SageMakerBackend(
            upstream=upstream,
            get_client=lambda: aws.sagemaker_runtime,  # built in a worker thread, on first use
            max_concurrency=self.settings.upstream_max_connections,
            route=route,
        )

    def preload_tokenizers(self) -> None:
        for model in self.registry:
            self.tokenizers.get(model.tokenizer)
