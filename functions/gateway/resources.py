"""The composition root: everything a request needs, built once per process by the app
factory and passed down explicitly (nothing below calls back up into it).

Building it does no I/O and imports only what every route needs: AWS clients are built on
their first call (gateway.aws.LazyClient), the upstream HTTP pool (aiohttp) and each
backend on the first request that forwards (backends/pool.py), so a function that never
forwards (ApiFunction) never loads them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from gateway.aws import AwsClients, path_dynamodb_config
from gateway.backends.cooldowns import CooldownCache, CooldownStore
from gateway.backends.loadstore import LoadStore
from gateway.backends.pool import Backends
from gateway.backends.routing import Router, RoutingPolicy
from gateway.chat.service import ChatSurface
from gateway.completions.service import CompletionSurface
from gateway.conversations import ConversationStore
from gateway.dynamodb_http import DynamoDBHttp
from gateway.embeddings.service import EmbeddingSurface
from gateway.guard import GuardService
from gateway.guard.metrics import BlockMetrics
from gateway.keys import KeyStore
from gateway.keys.auth import Authenticator
from gateway.keys.mac import KeyMac
from gateway.keys.tenancy import Tenancy
from gateway.limits import LimitStore
from gateway.limits.concurrency import KeyConcurrency
from gateway.messages.service import MessagesSurface, TokenCounter
from gateway.metering import UsageSink
from gateway.models.registry import ModelRegistry
from gateway.observability import Telemetry, Tracing
from gateway.pipeline import Pipeline
from gateway.responses.service import ResponsesSurface
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
    # Stored responses of the Responses API (previous_response_id, GET and DELETE).
    conversations: ConversationStore
    # X-Ray (on inside Lambda only): DynamoDB calls and each upstream call.
    tracing: Tracing = field(default_factory=Tracing)
    started_at: float = field(default_factory=time.time)
    # Built from the above in __post_init__: the backends, the pipeline, the surfaces.
    backends: Backends = field(init=False)
    pipeline: Pipeline = field(init=False)
    chat: ChatSurface = field(init=False)
    completions: CompletionSurface = field(init=False)
    embeddings: EmbeddingSurface = field(init=False)
    responses: ResponsesSurface = field(init=False)
    messages: MessagesSurface = field(init=False)
    token_counter: TokenCounter = field(init=False)

    def __post_init__(self) -> None:
        settings = self.settings
        router = Router(
            policy=RoutingPolicy.from_settings(settings),
            cooldowns=CooldownCache(
                store=CooldownStore(client=self.aws.lazy_dynamodb(), table=settings.usage_table),
                ttl=settings.endpoint_state_cache_seconds,
                deadline_seconds=settings.key_lookup_deadline_seconds,
            ),
            loads=LoadStore(client=self.aws.lazy_dynamodb(), table=settings.usage_table),
            metrics=self.telemetry,
        )
        self.backends = Backends(
            settings=settings,
            registry=self.registry,
            router=router,
            tracer=self.tracing,
            aws=self.aws,
        )
        self.pipeline = Pipeline(
            registry=self.registry,
            tokenizers=self.tokenizers,
            backends=self.backends,
            guard=GuardService(
                registry=self.registry,
                backends=self.backends,
                tokenizers=self.tokenizers,
                metrics=BlockMetrics.from_settings(settings),
            ),
            limits=self.limits,
            concurrency=KeyConcurrency(default_limit=settings.key_max_concurrency),
            sink=UsageSink(usage=self.usage),
            telemetry=self.telemetry,
            audit_rate=settings.usage_audit_rate,
            tenancy=Tenancy.from_settings(settings),
        )
        self.chat = ChatSurface(default_max_tokens=settings.default_max_tokens)
        self.completions = CompletionSurface(default_max_tokens=settings.default_max_tokens)
        self.embeddings = EmbeddingSurface()
        self.responses = ResponsesSurface(chat=self.chat, store=self.conversations)
        self.messages = MessagesSurface(chat=self.chat)
        self.token_counter = TokenCounter(tokenizers=self.tokenizers, limits=self.limits)

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
                mac=KeyMac.from_settings(settings, read_ssm_parameter=aws.read_ssm_parameter),
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
            conversations=ConversationStore(
                client=dynamodb,
                table=settings.responses_table,
                retention_days=settings.responses_retention_days,
            ),
            tracing=tracing,
        )

    @property
    def router(self) -> Router:
        return self.backends.router

    async def close(self) -> None:
        """Close the upstream HTTP pool (if any request created it), the usage writer's,
        and the AWS clients' pooled connections."""
        await self.backends.close()
        await self.usage.close()
        self.aws.close_connections()

    def reset_connections(self) -> HttpPool | None:
        """Drop every pooled connection (after a SnapStart restore: a snapshot's sockets are
        dead); the next request opens new ones. AWS clients stay (their pools are cleared);
        the upstream pool is replaced on next use and the old one returned, for a caller
        on the event loop to close."""
        self.aws.close_connections()
        return self.backends.reset_connections()

    def preload_tokenizers(self) -> None:
        for model in self.registry:
            self.tokenizers.get(model.tokenizer)
