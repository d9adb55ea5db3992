"""X-Ray traces with Powertools for AWS Lambda: on inside Lambda only, free when off.

Traces hold model ids, endpoints, statuses and AWS operations; never an API key or any
prompt or completion text.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.backends.chunks import PassesChunkFacts
from gateway.errors import GatewayError
from gateway.observability.telemetry import SERVICE
from gateway.settings import Settings

if TYPE_CHECKING:
    from gateway.backends.base import Backend

# Where the X-Ray SDK reads the current invocation's trace header inside Lambda.
TRACE_HEADER_ENV = "_X_AMZN_TRACE_ID"
_TRUTHY = {"1", "y", "yes", "t", "true", "on"}


def tracing_wanted(settings: Settings) -> bool:
    """Powertools' own rule (Tracer._is_tracer_disabled): on inside Lambda only, off under
    `sam local` or Chalice, and off whenever POWERTOOLS_TRACE_DISABLED is true."""
    if settings.powertools_trace_disabled.strip().lower() in _TRUTHY:
        return False
    if settings.aws_sam_local or settings.aws_chalice_cli_mode:
        return False
    return bool(settings.lambda_task_root)


class Tracing:
    """X-Ray subsegments for every DynamoDB (and SageMaker) call, through Powertools'
    Tracer patching botocore, and one `## upstream` subsegment per upstream call.

    Off (`Tracing()`, and `from_settings()` outside Lambda), it costs nothing: the X-Ray
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
    def from_settings(cls, settings: Settings) -> Tracing:
        """Called while the app is built (Lambda init); imports nothing when off."""
        if not tracing_wanted(settings):
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
            await self.close_wrapped()
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
