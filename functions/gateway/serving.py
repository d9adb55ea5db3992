"""What the metered routes (chat, completions, embeddings) share: the model for a route,
tokenizers loaded off the event loop, admission, and the metered request's error paths."""

from __future__ import annotations

import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

import anyio
import anyio.to_thread

from gateway.backends import Backend
from gateway.backends.wire import WireRoute
from gateway.errors import (
    ConfigurationError,
    GatewayError,
    InternalError,
    InvalidRequestError,
    NotFoundError,
    PermissionDeniedError,
)
from gateway.guard import GuardService
from gateway.keys import ApiKey
from gateway.limits import AdmissionUnconfirmedError, LimitStore
from gateway.metering import Meter, RecordSink
from gateway.metering.meter import Telemetry
from gateway.models.registry import ModelConfig, ModelRegistry
from gateway.tokens import ChatTokenizer, TokenizerStore
from gateway.usage import UsageStatus

logger = logging.getLogger(__name__)

T = TypeVar("T")
MAX_MODEL_ID_ECHO = 64


def echo_id(model_id: str) -> str:
    return model_id if len(model_id) <= MAX_MODEL_ID_ECHO else model_id[:MAX_MODEL_ID_ECHO] + "…"


@dataclass(frozen=True)
class RouteResult:
    """A metered route's answer: a body (ChatCompletion, Completion or EmbeddingList) or an
    SSE byte stream, and headers (x-ratelimit-*) to send."""

    body: Mapping[str, Any] | None = None
    stream: AsyncIterator[bytes] | None = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RouteDeps:
    """Everything a metered route needs, built once per process."""

    registry: ModelRegistry
    tokenizers: TokenizerStore
    sink: RecordSink
    telemetry: Telemetry
    limits: LimitStore | None
    # USAGE_AUDIT_RATE, and the draw that decides each request (injectable for tests).
    audit_rate: float = 1.0
    draw: Callable[[], float] = random.random

    def meter(self, *, request_id: str, key: ApiKey, route: str) -> Meter:
        return Meter(
            request_id=request_id,
            key=key,
            sink=self.sink,
            telemetry=self.telemetry,
            route=route,
            audit=self.audit_rate >= 1.0 or self.draw() < self.audit_rate,
        )

    async def run(
        self,
        read_body: Callable[[], Awaitable[bytes]],
        *,
        key: ApiKey,
        request_id: str,
        route: str,
        create: Callable[[bytes, Meter], Awaitable[T]],
    ) -> T:
        """One metered request: its Meter, its body read (so a body refused while it is
        read is metered too), then `create`; the Meter records however it ends."""
        meter = self.meter(request_id=request_id, key=key, route=route)

        async def work() -> T:
            return await create(await read_body(), meter)

        return await metered(meter, work)

    def resolve_model(self, *, key: ApiKey, model_id: str, route: str) -> ModelConfig:
        """The model, if it exists, the key may use it, and it serves this route."""
        model = self.registry.get(model_id)
        if model is None:
            raise NotFoundError(
                f"The model `{echo_id(model_id)}` does not exist or you do not have access to it.",
                param="model",
            )
        if not key.allows_model(model_id):
            raise PermissionDeniedError(
                f"This API key may not use the model `{echo_id(model_id)}`.", param="model"
            )
        if not model.serves(route):
            raise InvalidRequestError(
                f"The model `{echo_id(model_id)}` does not support the {route} API.",
                param="model",
                code="model_not_supported",
            )
        return model

    async def tokenizer(self, model: ModelConfig) -> ChatTokenizer:
        loaded = self.tokenizers.loaded(model.tokenizer)
        if loaded is not None:
            return loaded
        # The first use of a tokenizer may load (0.1-1 s) or download it: off the loop.
        return await anyio.to_thread.run_sync(self.tokenizers.get, model.tokenizer)

    async def admit(self, meter: Meter, reserve: int) -> dict[str, str]:
        """Admit the request under the key's limits (shared by every route); its headers."""
        if self.limits is None or not meter.key.has_limits:
            return {}
        # Bounded by the admission deadline: past it, a 503 (DependencyError). An answer
        # lost on the way still goes on the record, for the aggregator to settle.
        try:
            admission = await self.limits.admit_within(
                key=meter.key, reserve_tokens=reserve, request_id=meter.request_id
            )
        except AdmissionUnconfirmedError as exc:
            meter.admission = exc.admission
            raise
        meter.admission = admission
        return admission.headers


class MeteredService:
    """What every metered route's service shares: `create` runs `_create` under the
    request's Meter (RouteDeps.run), with the body read inside it."""

    route: ClassVar[str]

    def __init__(
        self, *, deps: RouteDeps, backend_for: Callable[[ModelConfig, WireRoute], Backend]
    ) -> None:
        self._deps = deps
        self._backend_for = backend_for

    async def create(
        self, read_body: Callable[[], Awaitable[bytes]], *, key: ApiKey, request_id: str
    ) -> RouteResult:
        """The route's body, or its SSE byte stream when `stream` is set. The body is read
        here, so a body refused while it is read (413) is metered too."""
        return await self._deps.run(
            read_body, key=key, request_id=request_id, route=self.route, create=self._create
        )

    async def _create(self, raw: bytes, meter: Meter) -> RouteResult:
        raise NotImplementedError


class GenerationService(MeteredService):
    """The routes that generate (chat, completions): also the default `max_tokens` and the
    guardrails."""

    def __init__(
        self,
        *,
        deps: RouteDeps,
        backend_for: Callable[[ModelConfig, WireRoute], Backend],
        default_max_tokens: int,
        guard: GuardService | None = None,
    ) -> None:
        super().__init__(deps=deps, backend_for=backend_for)
        self._default_max_tokens = default_max_tokens
        self._guard = guard or GuardService.disabled()


async def metered(meter: Meter, work: Callable[[], Awaitable[T]]) -> T:
    """Run a request's work; however it ends before its result, the Meter writes the record."""
    try:
        return await work()
    except GatewayError as exc:
        await meter.fail(exc)
        raise
    except Exception as exc:
        error = internal_error(exc, meter.request_id)
        await meter.fail(error)
        raise error from exc
    except BaseException:  # cancelled: the client went away while we waited
        await meter.close(UsageStatus.CLIENT_DISCONNECTED, http_status=499)
        raise


def internal_error(exc: Exception, request_id: str) -> InternalError:
    if isinstance(exc, ConfigurationError):
        logger.error("configuration error", extra={"request_id": request_id, "error": str(exc)})
        return InternalError(
            "The gateway is misconfigured for this model.", code="configuration_error"
        )
    logger.exception("unhandled error", extra={"request_id": request_id})
    return InternalError("The gateway had an internal error.")
