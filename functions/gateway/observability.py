"""Structured logs, CloudWatch metrics (EMF) and X-Ray traces with Powertools for AWS Lambda.

Logs, metrics and traces carry request ids, key ids, models, statuses, token counts and
timings; never an API key or any prompt or completion text.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.backends.chunks import PassesChunkFacts
from gateway.errors import GatewayError
from gateway.settings import Settings
from gateway.usage.records import UsageRecord

if TYPE_CHECKING:
    from gateway.backends.base import Backend

SERVICE = "gateway"
logger = logging.getLogger(SERVICE)


def configure_logging(level: str) -> Logger:
    """JSON logs for the `gateway` logger tree (every module logs through a child of it)."""
    return Logger(service=SERVICE, level=level.upper(), logger_handler=None)


class Telemetry:
    """One EMF document per request; EphemeralMetrics keeps no state shared between them.
    With metrics disabled (POWERTOOLS_METRICS_DISABLED) nothing is built; the log lines
    cost nothing below their level."""

    def __init__(self, namespace: str = "GpuGateway", *, metrics: bool = True) -> None:
        self._namespace = namespace
        self._enabled = metrics

    @classmethod
    def from_settings(cls, settings: Settings) -> Telemetry:
        return cls(
            settings.powertools_metrics_namespace, metrics=not settings.powertools_metrics_disabled
        )

    def _metrics(self, **dimensions: str) -> EphemeralMetrics:
        metrics = EphemeralMetrics(namespace=self._namespace, service=SERVICE)
        for name, value in dimensions.items():
            metrics.add_dimension(name=name, value=value)
        return metrics

    def rejected(self, *, error_type: str, status: int) -> None:
        """A request refused before it reached an upstream (no usage record is written)."""
        logger.info("request rejected", extra={"status": status, "error_type": error_type})
        if not self._enabled:
            return
        metrics = self._metrics(error_type=error_type)
        metrics.add_metric(name="Rejections", unit=MetricUnit.Count, value=1)
        metrics.flush_metrics()

    def completed(self, record: UsageRecord, *, mismatch: bool) -> None:
        self._log_completed(record, mismatch=mismatch)
        if self._enabled:
            self._emit_completed(record, mismatch=mismatch)

    @staticmethod
    def _log_completed(record: UsageRecord, *, mismatch: bool) -> None:
        if not logger.isEnabledFor(logging.INFO):
            if mismatch:
                Telemetry._log_mismatch(record)
            return
        logger.info(
            "request completed",
            extra={
                "request_id": record.request_id,
                "key_id": record.key_id,
                "model": record.model,
                "route": record.route,
                "status": record.status.value,
                "http_status": record.http_status,
                "stream": record.stream,
                "prompt_tokens": record.prompt_tokens,
                "completion_tokens": record.completion_tokens,
                "latency_ms": record.latency_ms,
                "ttft_ms": record.ttft_ms,
                "error": record.error,
            },
        )
        if mismatch:
            Telemetry._log_mismatch(record)

    @staticmethod
    def _log_mismatch(record: UsageRecord) -> None:
        logger.warning(
            "usage mismatch between gateway and upstream",
            extra={
                "request_id": record.request_id,
                "model": record.model,
                "upstream_prompt_tokens": record.upstream_prompt_tokens,
                "gateway_prompt_tokens": record.gateway_prompt_tokens,
                "upstream_completion_tokens": record.upstream_completion_tokens,
                "gateway_completion_tokens": record.gateway_completion_tokens,
            },
        )

    def _emit_completed(self, record: UsageRecord, *, mismatch: bool) -> None:
        metrics = self._metrics(model=record.model)
        metrics.add_metric(name="Requests", unit=MetricUnit.Count, value=1)
        if record.is_error:
            metrics.add_metric(name="Errors", unit=MetricUnit.Count, value=1)
        metrics.add_metric(name="PromptTokens", unit=MetricUnit.Count, value=record.prompt_tokens)
        metrics.add_metric(
            name="CompletionTokens", unit=MetricUnit.Count, value=record.completion_tokens
        )
        if record.latency_ms is not None:
            metrics.add_metric(
                name="Latency", unit=MetricUnit.Milliseconds, value=record.latency_ms
            )
        if record.ttft_ms is not None:
            metrics.add_metric(
                name="TimeToFirstToken", unit=MetricUnit.Milliseconds, value=record.ttft_ms
            )
        if mismatch:
            metrics.add_metric(name="UsageMismatches", unit=MetricUnit.Count, value=1)
        metrics.flush_metrics()
        # Requests per API route (chat, completions, embeddings): a document of its own, so
        # the per-model series keep their dimensions.
        by_route = self._metrics(route=record.route)
        by_route.add_metric(name="Requests", unit=MetricUnit.Count, value=1)
        by_route.flush_metrics()

    def endpoint_attempt(
        self, *, model: str, endpoint: str, ok: bool, failover: bool, ttft_ms: float | None
    ) -> None:
        """One attempt on one of a model's endpoints (gateway/backends/routing.py)."""
        if not self._enabled:
            return
        metrics = self._metrics(model=model, endpoint=endpoint)
        metrics.add_metric(name="EndpointRequests", unit=MetricUnit.Count, value=1)
        if not ok:
            metrics.add_metric(name="EndpointErrors", unit=MetricUnit.Count, value=1)
        if failover:
            metrics.add_metric(name="EndpointFailovers", unit=MetricUnit.Count, value=1)
        if ttft_ms is not None:
            metrics.add_metric(
                name="EndpointTimeToFirstToken", unit=MetricUnit.Milliseconds, value=ttft_ms
            )
        metrics.flush_metrics()


# --- X-Ray tracing -------------------------------------------------------------------

# Where the X-Ray SDK reads the current invocation's trace header inside Lambda.
TRACE_HEADER_ENV = "_X_AMZN_TRACE_ID"
_TRUTHY = {"1", "y", "yes", "t", "true", "on"}


def tracing_wanted() -> bool:
    """Powertools' own rule (Tracer._is_tracer_disabled): on inside Lambda only, off under
    `sam local` or Chalice, and off whenever POWERTOOLS_TRACE_DISABLED is true."""
    if os.environ.get("POWERTOOLS_TRACE_DISABLED", "").strip().lower() in _TRUTHY:
        return False
    if os.environ.get("AWS_SAM_LOCAL") or os.environ.get("AWS_CHALICE_CLI_MODE"):
        return False
    return bool(os.environ.get("LAMBDA_TASK_ROOT"))


class Tracing:
    """X-Ray subsegments for every DynamoDB (and SageMaker) call, through Powertools'
    Tracer patching botocore, and one `## upstream` subsegment per upstream call.

    Off (`Tracing()`, and `from_environment()` outside Lambda), it costs nothing: the X-Ray
    SDK is not imported, botocore is not patched, backends are not wrapped and no
    middleware is added. Traces hold model ids, endpoints, statuses and AWS operations
    (the SDK records table and endpoint names, never items or request bodies).
    """

    def __init__(self, recorder: Any = None) -> None:
        self._recorder = recorder

    @property
    def enabled(self) -> bool:
        return self._recorder is not None

    @classmethod
    def from_environment(cls) -> Tracing:
        """Called while the app is built (Lambda init); imports nothing when off."""
        if not tracing_wanted():
            return cls()
        from aws_lambda_powertools import Tracer
        from aws_xray_sdk.core import xray_recorder

        # Patch botocore only: the upstream's HTTP calls get the subsegment below instead.
        Tracer(service=SERVICE, patch_modules=["botocore"])
        return cls(xray_recorder)

    def upstream_span(self, *, model: str, endpoint: str, stream: bool) -> UpstreamSpan:
        return UpstreamSpan(self._recorder, model=model, endpoint=endpoint, stream=stream)

    def aws_call(self, service: str) -> Callable[[str, str, str], Callable[[int], None]] | None:
        """For calls made without botocore (dynamodb_http.py): `start(operation, table,
        region)`
        begins a subsegment as the SDK's botocore patch records one (name `service`,
        namespace aws, operation, region, table_name); calling what it returns with the
        HTTP status (0: no answer) ends it."""
        recorder = self._recorder
        if recorder is None:
            return None

        def start(operation: str, table: str, region: str) -> Callable[[int], None]:
            subsegment = recorder.begin_subsegment(service, namespace="aws")
            if subsegment is not None:
                subsegment.set_aws({"operation": operation, "region": region, "table_name": table})

            def end(status: int) -> None:
                if subsegment is None:
                    return
                subsegment.put_http_meta("status", status)
                if status == 0 or status >= 500:
                    subsegment.add_fault_flag()
                elif status >= 400:
                    subsegment.add_error_flag()
                if recorder.current_subsegment() is subsegment:
                    recorder.end_subsegment()
                else:
                    subsegment.close()

            return end

        return start

    def traced(self, backend: Backend, *, model: str, endpoint: str) -> Backend:
        """The backend, its calls traced when tracing is on; the backend itself when off."""
        if not self.enabled:
            return backend
        return TracedBackend(backend, tracing=self, model=model, endpoint=endpoint)


class UpstreamSpan:
    """An `## upstream` subsegment, begun now and ended by `end(status)` (once)."""

    def __init__(self, recorder: Any, *, model: str, endpoint: str, stream: bool) -> None:
        self._recorder = recorder
        self._subsegment: Any = None
        if recorder is None:
            return
        subsegment = recorder.begin_subsegment("## upstream", namespace="remote")
        if subsegment is not None:
            subsegment.put_annotation("model", model)
            subsegment.put_annotation("endpoint", endpoint)
            subsegment.put_annotation("stream", stream)
        self._subsegment = subsegment

    def end(self, status: int, error_code: str | None = None) -> None:
        subsegment, self._subsegment = self._subsegment, None
        if subsegment is None:
            return
        subsegment.put_annotation("status", status)
        if error_code:
            subsegment.put_annotation("error_code", error_code)
        if status == 429:
            subsegment.add_throttle_flag()
        if status >= 500:
            subsegment.add_fault_flag()
        elif status >= 400:
            subsegment.add_error_flag()
        # The SDK keeps a stack of open subsegments per thread; one Lambda environment
        # serves one invocation at a time, so ours is on top unless something is amiss.
        if self._recorder.current_subsegment() is subsegment:
            self._recorder.end_subsegment()
        else:
            subsegment.close()


def _outcome(exc: BaseException) -> tuple[int, str | None]:
    if isinstance(exc, GatewayError):
        return exc.status_code, exc.code
    if isinstance(exc, asyncio.CancelledError | GeneratorExit):
        return 499, "client_closed_request"  # the client went away mid-call
    return 500, type(exc).__name__


class TracedBackend:
    """A Backend whose calls are `## upstream` subsegments: a completion from request to
    body, a stream from request to its last chunk (or to the client going away: 499)."""

    def __init__(self, backend: Backend, *, tracing: Tracing, model: str, endpoint: str) -> None:
        self._backend = backend
        self._tracing = tracing
        self._model = model
        self._endpoint = endpoint

    def _span(self, stream: bool) -> UpstreamSpan:
        return self._tracing.upstream_span(
            model=self._model, endpoint=self._endpoint, stream=stream
        )

    async def complete(self, body: dict[str, Any]) -> dict[str, Any]:
        span = self._span(False)
        try:
            data = await self._backend.complete(body)
        except BaseException as exc:
            span.end(*_outcome(exc))
            raise
        span.end(200)
        return data

    async def open_stream(self, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        span = self._span(True)
        try:
            chunks = await self._backend.open_stream(body)
        except BaseException as exc:
            span.end(*_outcome(exc))
            raise
        return _TracedChunks(chunks, span)


class _TracedChunks(PassesChunkFacts):
    """The backend's chunk iterator, ending the span with the stream. Closing it closes
    the backend's (which cancels the upstream request), as before."""

    def __init__(self, chunks: AsyncIterator[dict[str, Any]], span: UpstreamSpan) -> None:
        self._chunks = chunks
        self._span = span

    def __aiter__(self) -> _TracedChunks:
        return self

    async def __anext__(self) -> dict[str, Any]:
        try:
            return await self._chunks.__anext__()
        except StopAsyncIteration:
            self._span.end(200)
            raise
        except BaseException as exc:
            self._span.end(*_outcome(exc))
            raise

    async def aclose(self) -> None:
        try:
            aclose = getattr(self._chunks, "aclose", None)
            if aclose is not None:
                await aclose()
        finally:
            self._span.end(499, "client_closed_request")


class TraceHeaderMiddleware:
    """Under the Lambda Web Adapter the app runs in its own process, which the Lambda
    runtime does not give `_X_AMZN_TRACE_ID`: the adapter sends each invocation's trace
    header as `x-amzn-trace-id` instead, and this copies it where the X-Ray SDK looks.
    Under Mangum (the scope has `aws.event`) the runtime has set the variable for the
    invocation already; the request's header there is API Gateway's, so it is left alone.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and "aws.event" not in scope:
            for name, value in scope["headers"]:
                if name == b"x-amzn-trace-id":
                    os.environ[TRACE_HEADER_ENV] = value.decode("latin-1")
                    break
        await self.app(scope, receive, send)
