"""The request pipeline: every metered route, in one fixed order.

    read body -> parse and validate -> resolve the model -> count (plan) -> admit
      -> screen input -> route and forward -> relay (screen output) -> settle and record

A surface (chat, completions, embeddings, ...) supplies only its wire adapters
(pipeline/surface.py). The request is one RequestContext passed down explicitly; its Meter
writes exactly one usage record however the request ends: completed, refused, failed
upstream or in the gateway, or abandoned by its client at any await (the client is
watched until the answer is ready; a stream's relay watches it after that).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

import anyio

from gateway.backends.pool import Backends
from gateway.errors import (
    ClientDisconnected,
    ConfigurationError,
    GatewayError,
    InternalError,
    InvalidRequestError,
    NotFoundError,
    PermissionDeniedError,
)
from gateway.guard import GuardService
from gateway.keys import ApiKey
from gateway.keys.tenancy import Tenancy
from gateway.limits import AdmissionUnconfirmedError, LimitStore
from gateway.limits.admission import in_flight
from gateway.limits.concurrency import KeyConcurrency
from gateway.metering import Meter, RecordSink
from gateway.metering.meter import Telemetry
from gateway.models.registry import ModelConfig, ModelRegistry
from gateway.pipeline.context import Client, RequestContext, RouteResult
from gateway.pipeline.sse import MeteredStream
from gateway.pipeline.surface import Plan, Surface
from gateway.tokens import TokenizerStore
from gateway.usage import UsageStatus

logger = logging.getLogger(__name__)

Request = TypeVar("Request")
T = TypeVar("T")
MAX_MODEL_ID_ECHO = 64
# The upstream wires whose body takes vLLM's cache_salt and priority (keys/tenancy.py):
# chat and completions, and the surfaces translated to chat (responses, messages).
GENERATIVE = ("chat", "completions")


def echo_id(model_id: str) -> str:
    return model_id if len(model_id) <= MAX_MODEL_ID_ECHO else model_id[:MAX_MODEL_ID_ECHO] + "…"


class Pipeline:
    """Built once per process (resources.py) with everything a request may need."""

    def __init__(
        self,
        *,
        registry: ModelRegistry,
        tokenizers: TokenizerStore,
        backends: Backends,
        guard: GuardService,
        limits: LimitStore | None,
        concurrency: KeyConcurrency,
        sink: RecordSink,
        telemetry: Telemetry,
        audit_rate: float = 1.0,
        draw: Callable[[], float] = random.random,
        tenancy: Tenancy | None = None,
    ) -> None:
        self.registry = registry
        self.tokenizers = tokenizers
        self.backends = backends
        self.guard = guard
        self.limits = limits
        self.concurrency = concurrency
        self.sink = sink
        self.telemetry = telemetry
        # USAGE_AUDIT_RATE, and the draw that decides each request (injectable for tests).
        self.audit_rate = audit_rate
        self.draw = draw
        # The cache salt and priority the upstream is sent for each key (keys/tenancy.py).
        self.tenancy = tenancy or Tenancy()

    async def run(
        self, surface: Surface[Request], client: Client, *, key: ApiKey, request_id: str
    ) -> RouteResult:
        """One request of `surface`, from its body to its answer."""
        ctx = self.begin(surface.route, key=key, request_id=request_id)
        try:
            raw = await client.read_body()
            return await _until_gone(client, self.serve(surface, ctx, raw))
        except GatewayError as exc:
            error = await _refusal_behind(ctx.meter, exc)
            await ctx.meter.fail(error)
            if error is not exc:
                raise error from exc
            raise
        except Exception as exc:
            error = internal_error(exc, request_id)
            await ctx.meter.fail(error)
            raise error from exc
        except BaseException:  # cancelled: the server dropped the request
            await ctx.meter.close(UsageStatus.CLIENT_DISCONNECTED, http_status=499)
            raise

    def begin(self, route: str, *, key: ApiKey, request_id: str) -> RequestContext:
        audit = self.audit_rate >= 1.0 or self.draw() < self.audit_rate
        meter = Meter(
            request_id=request_id,
            key=key,
            sink=self.sink,
            telemetry=self.telemetry,
            route=route,
            audit=audit,
        )
        return RequestContext(request_id=request_id, key=key, route=route, meter=meter)

    async def serve(
        self, surface: Surface[Request], ctx: RequestContext, raw: bytes
    ) -> RouteResult:
        """The steps after the body is read, in order."""
        request = surface.parse(raw)
        ctx.meter.stream = surface.streams(request)
        ctx.model = model = self.resolve_model(ctx, surface.model_id(request), surface.route)
        ctx.meter.model_id = model.id
        plan = await surface.plan(request, ctx, self.tokenizers)
        wire = plan.wire or surface.wire  # a model may serve the surface's API natively
        tenant_fields = self.tenancy.upstream_fields(model, ctx.key)
        if tenant_fields and wire.name in GENERATIVE:  # cache_salt, priority
            plan = dataclasses.replace(plan, body={**plan.body, **tenant_fields})
        headers = await self.admit(ctx, plan)
        screening = surface.screening(request, ctx, self.guard)
        await screening.check_input()
        backend = self.backends.for_model(model, wire)
        ctx.meter.forwarded = True
        if ctx.meter.stream:
            chunks = await backend.open_stream(
                plan.body, trace=ctx.trace, tenant=ctx.key.key_id, hint=plan.hint
            )
            screened = screening.screen_stream(chunks)
            frames = surface.relay(request, ctx, screened)
            return RouteResult(stream=MeteredStream(frames, ctx.meter, screened), headers=headers)
        data = await surface.forward(request, ctx, backend, plan)
        data = await screening.check_completion(data)
        await ctx.meter.close(UsageStatus.COMPLETED)
        return RouteResult(body=await surface.answer(request, ctx, data), headers=headers)

    def resolve_model(self, ctx: RequestContext, model_id: str, route: str) -> ModelConfig:
        """The model, if it exists, the key may use it, and it serves this route."""
        model = self.registry.get(model_id)
        if model is None:
            raise NotFoundError(
                f"The model `{echo_id(model_id)}` does not exist or you do not have access to it.",
                param="model",
            )
        if not ctx.key.allows_model(model_id):
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

    async def admit(self, ctx: RequestContext, plan: Plan) -> dict[str, str]:
        """The key's share of this instance (concurrency), then its limits across every
        instance (rate and budget: one conditional update); the x-ratelimit headers."""
        ctx.meter.slot = self.concurrency.acquire(ctx.key)
        if self.limits is None or not ctx.key.has_limits:
            return {}
        # Bounded by the admission deadline: past it, a 503. An admission sent but not
        # confirmed (unanswered, or cancelled by the client's departure) stays on the
        # record, for the aggregator to settle if it landed.
        planned = self.limits.plan(
            key=ctx.key, reserve_tokens=plan.reserve, request_id=ctx.request_id
        )
        ctx.meter.admission = in_flight(ctx.key, planned)
        try:
            admission = await self.limits.admit_planned(key=ctx.key, planned=planned)
        except AdmissionUnconfirmedError as exc:
            ctx.meter.admission = exc.admission
            raise
        except GatewayError:  # refused (429), or a window's 503: nothing reserved
            ctx.meter.admission = None
            raise
        ctx.meter.admission = admission
        return admission.headers


async def _until_gone(client: Client, work: Awaitable[T]) -> T:
    """`work`, cancelled the moment the client goes away (then ClientDisconnected). The
    cancellation reaches the upstream call, which closes its connection: the GPU server
    stops generating for nobody.

    One plain task waits for the departure, and its callback cancels the work's anyio
    scope (an anyio scope, so the record's shielded writes still finish). The watcher is
    cancelled when the work ends, not joined: a task group's exit would wait a turn of the
    event loop for it on every request."""
    with anyio.CancelScope() as scope:
        watcher = asyncio.ensure_future(client.wait_disconnected())
        watcher.add_done_callback(lambda gone: _cancel_unless_failed(gone, scope))
        try:
            return await work
        finally:
            watcher.cancel()
    raise ClientDisconnected("The client closed the connection before the answer.")


def _cancel_unless_failed(gone: asyncio.Future[None], scope: anyio.CancelScope) -> None:
    if not gone.cancelled() and gone.exception() is None:
        scope.cancel()


async def _refusal_behind(meter: Meter, exc: GatewayError) -> GatewayError:
    """The error the client gets for `exc`. A cold instance counts the prompt beside the
    upstream call (Meter.deferred): when the upstream rejected the request and the count
    refused it too (the chat template's own 400), the client gets that refusal, as a warm
    instance gives it, rather than the upstream's status without its text."""
    task = meter.deferred
    if task is None or exc.code != "upstream_rejected_request":
        return exc
    with anyio.CancelScope(shield=True):
        try:
            await task
        except InvalidRequestError as refusal:
            return refusal
        except Exception:  # noqa: BLE001 - the count's own failure is the Meter's to note
            return exc
    return exc


def internal_error(exc: Exception, request_id: str) -> InternalError:
    if isinstance(exc, ConfigurationError):
        logger.error("configuration error", extra={"request_id": request_id, "error": str(exc)})
        return InternalError(
            "The gateway is misconfigured for this model.", code="configuration_error"
        )
    logger.exception("unhandled error", extra={"request_id": request_id})
    return InternalError("The gateway had an internal error.")
