"""SageMaker real-time endpoints whose container speaks OpenAI chat completions on
`/invocations` (TGI's Messages API, LMI, vLLM).

boto3 is synchronous, so every call (the client's first build included) and every read of a
response stream runs in a worker thread. Streamed replies arrive as `PayloadPart` events
whose bytes are not aligned to lines or events: they are buffered and split into server-sent
events (or JSON lines, LMI's default) here. Closing a stream early closes its connection,
which stops the generation.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
import anyio.to_thread
import orjson
from botocore.config import Config
from botocore.eventstream import ParserError as EventStreamParserError
from botocore.exceptions import (
    BotoCoreError,
    EventStreamError,
    ReadTimeoutError,
)
from urllib3.exceptions import HTTPError as Urllib3Error
from urllib3.exceptions import ReadTimeoutError as Urllib3ReadTimeoutError

from gateway.backends.chunks import Chunks
from gateway.backends.sagemaker_errors import call_errors, client_error
from gateway.backends.sse import SSEDecoder, until_done
from gateway.backends.wire import CHAT, WireRoute
from gateway.errors import UpstreamError, UpstreamTimeoutError
from gateway.models.registry import SageMakerEndpoint
from gateway.settings import Settings

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from botocore.eventstream import EventStream
    from mypy_boto3_sagemaker_runtime import SageMakerRuntimeClient
    from mypy_boto3_sagemaker_runtime.type_defs import ResponseStreamTypeDef

logger = logging.getLogger(__name__)

T = TypeVar("T")


def client_config(settings: Settings) -> Config:
    """The botocore Config for the process-wide sagemaker-runtime client. The read timeout
    bounds each socket read: for a stream, the longest silence between two events. Standard
    retries (throttling, 5xx, connection failures, read timeouts) are capped at one retry
    (`total_max_attempts` counts the first attempt): a retry is a whole new generation."""
    return Config(
        connect_timeout=settings.upstream_connect_timeout,
        read_timeout=settings.upstream_read_timeout,
        max_pool_connections=settings.upstream_max_connections,
        retries={"mode": "standard", "total_max_attempts": 2},
        tcp_keepalive=True,
    )


class _EventReader:
    """A SageMaker response stream read from worker threads, which the event loop can
    close at any moment without blocking on I/O.

    If a read is in flight, `close` shuts the socket down (which wakes the read) and the
    reading thread closes the stream when its read returns; otherwise `close` closes it
    at once. Either way the connection is dropped, so the endpoint stops generating.
    """

    def __init__(self, open_stream: Callable[[], EventStream[ResponseStreamTypeDef]]) -> None:
        self._open_stream = open_stream
        self._lock = threading.Lock()
        self._stream: EventStream[ResponseStreamTypeDef] | None = None
        self._events: Iterator[ResponseStreamTypeDef] | None = None
        self._busy = False
        self._closed = False

    def start(self) -> None:
        """Worker thread: send the request; returns once the endpoint accepted it."""
        self._step(self._start)

    def _start(self) -> None:
        stream = self._open_stream()
        self._stream = stream
        self._events = iter(stream)

    def next(self) -> ResponseStreamTypeDef | None:
        """Worker thread: the next event, or None at the end of the stream."""
        return self._step(self._next)

    def _next(self) -> ResponseStreamTypeDef | None:
        return None if self._events is None else next(self._events, None)

    def _step(self, fn: Callable[[], T]) -> T | None:
        with self._lock:
            if self._closed:
                return None
            self._busy = True
        try:
            return fn()
        finally:
            with self._lock:
                self._busy = False
                stream = self._stream if self._closed else None
            if stream is not None:
                stream.close()

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            busy, stream = self._busy, self._stream
        if stream is None:
            return  # still being opened: `start` closes it when the call returns
        if busy:
            _shutdown(stream)
        else:
            stream.close()


def _shutdown(stream: EventStream[Any]) -> None:
    """Wake a thread blocked reading the stream (urllib3 >= 2.3: HTTPResponse.shutdown)."""
    raw = getattr(stream, "_raw_stream", None)
    shutdown = getattr(raw, "shutdown", None)
    if callable(shutdown):
        with contextlib.suppress(OSError, ValueError, RuntimeError):
            shutdown()


class SageMakerBackend:
    """The Backend for one SageMaker endpoint, through a shared sagemaker-runtime client:
    `get_client()` returns it, called in each call's worker thread, so that building it on
    the first call (AwsClients.sagemaker_runtime: once, under a lock) blocks no event loop.

    Worker threads come from this backend's own limiter, not anyio's default one: a
    stream holds a thread while it waits for each event, and must not starve the rest
    of the gateway's thread work.
    """

    def __init__(
        self,
        *,
        upstream: SageMakerEndpoint,
        get_client: Callable[[], SageMakerRuntimeClient],
        max_concurrency: int = 100,
        route: WireRoute = CHAT,
    ) -> None:
        self._upstream = upstream
        # The container tells routes apart by the body (vLLM: messages, prompt, input).
        self._route = route
        self._client = get_client  # configured with client_config(settings)
        self._max_concurrency = max_concurrency
        self._thread_limiter: anyio.CapacityLimiter | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _limiter(self) -> anyio.CapacityLimiter:
        loop = asyncio.get_running_loop()
        if self._thread_limiter is None or self._loop is not loop:
            self._thread_limiter = anyio.CapacityLimiter(self._max_concurrency)
            self._loop = loop
        return self._thread_limiter

    async def _in_thread(self, fn: Callable[[], T]) -> T:
        # Abandoned on cancellation: the thread's result is dropped, and for streams
        # _EventReader.close makes sure the connection goes with it.
        return await anyio.to_thread.run_sync(fn, abandon_on_cancel=True, limiter=self._limiter())

    async def complete(self, body: dict[str, Any]) -> dict[str, Any]:
        payload = orjson.dumps(body)

        def invoke() -> bytes:
            response = self._client().invoke_endpoint(
                EndpointName=self._upstream.endpoint_name,
                ContentType="application/json",
                Accept="application/json",
                Body=payload,
            )
            with contextlib.closing(response["Body"]) as stream:
                return stream.read()

        with call_errors(self._upstream.endpoint_name):
            raw = await self._in_thread(invoke)
        return self._route.parse_body(raw)

    async def open_stream(self, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        payload = orjson.dumps(body if body.get("stream") is True else {**body, "stream": True})

        def invoke() -> EventStream[ResponseStreamTypeDef]:
            response = self._client().invoke_endpoint_with_response_stream(
                EndpointName=self._upstream.endpoint_name,
                ContentType="application/json",
                Body=payload,
            )
            return response["Body"]

        reader = _EventReader(invoke)
        started = False
        try:
            with call_errors(self._upstream.endpoint_name):
                await self._in_thread(reader.start)
            started = True
        finally:
            if not started:
                reader.close()
        return Chunks(self._events(reader), self._route.parse_chunk)

    async def _events(self, reader: _EventReader) -> AsyncIterator[list[bytes]]:
        decoder = SSEDecoder()
        try:
            while True:
                event = await self._in_thread(reader.next)
                if event is None:
                    payloads = decoder.close()
                elif "PayloadPart" in event:
                    payloads = decoder.feed(event["PayloadPart"].get("Bytes", b""))
                else:
                    # botocore raises modeled error events; this catches them sent as events.
                    failure = event.get("ModelStreamError") or event.get("InternalStreamFailure")
                    if failure is not None:
                        raise UpstreamError(
                            "The model endpoint failed mid-stream.", code="upstream_stream_error"
                        )
                    continue
                events, done = until_done(payloads)
                if events:
                    yield events
                if done or event is None:
                    return
        except EventStreamError as exc:  # ModelStreamError / InternalStreamFailure
            raise client_error(exc, self._upstream.endpoint_name) from exc
        except (Urllib3ReadTimeoutError, ReadTimeoutError, TimeoutError) as exc:
            raise UpstreamTimeoutError("The model endpoint stopped sending tokens.") from exc
        except (Urllib3Error, BotoCoreError, EventStreamParserError, OSError) as exc:
            raise UpstreamError(
                f"The model endpoint dropped the stream: {type(exc).__name__}"
            ) from exc
        finally:
            reader.close()
