"""What the routers share: the client as the pipeline sees it, the metered routes' route
class, response classes, and the ASGI middleware."""

from __future__ import annotations

import inspect
import logging
import secrets
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from typing import TYPE_CHECKING, Any

import anyio
import orjson
from fastapi.routing import APIRoute
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response, StreamingResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.backends.chunks import aclose_of
from gateway.errors import ClientDisconnected, GatewayError, InternalError, RequestTooLargeError

if TYPE_CHECKING:
    from gateway.pipeline import RouteResult

logger = logging.getLogger(__name__)


def json_response(
    body: Any, *, status_code: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    return Response(
        orjson.dumps(body), status_code=status_code, headers=headers, media_type="application/json"
    )


class HttpClient:
    """A Starlette request as the pipeline's Client: its body, and its departure."""

    def __init__(self, request: Request) -> None:
        self._request = request

    async def read_body(self) -> bytes:
        try:
            return await self._request.body()
        except ClientDisconnect as exc:  # gone mid-upload: not the gateway's failure
            raise ClientDisconnected("The client closed the connection while sending.") from exc

    async def wait_disconnected(self) -> None:
        # Once the body is read, the server's next message is http.disconnect (uvicorn
        # sends it when the socket closes; Mangum never does: a buffered invocation
        # cannot tell, so this waits for ever and costs nothing).
        while (await self._request.receive())["type"] != "http.disconnect":
            pass


class MeteredRoute(APIRoute):
    """A route whose endpoint takes nothing but the request is called with it directly.

    The metered routes read, parse and validate their own body (the pipeline does, so that
    every authenticated request is metered) and authenticate inside the endpoint
    (`deps.get_caller`), so FastAPI's request handler would only solve an empty set of
    dependencies around them: about 100,000 instructions of a buffered chat completion's
    3 million (docs/BENCHMARKS.md, "Counted in instructions"). Everything else stays
    FastAPI's: matching, the body-size limit, exception handlers, the OpenAPI entry. An
    endpoint with any other parameter is handled as by any APIRoute. Dependencies given to
    `include_router` would be skipped too: app.py includes these routers bare.

    This is FastAPI's documented hook for a custom route class (`get_route_handler`); it
    is called once, when the route is built, and holds no request state."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        if _takes_only_request(self):
            endpoint: Callable[[Request], Coroutine[Any, Any, Response]] = self.endpoint
            return endpoint
        return super().get_route_handler()


def _takes_only_request(route: APIRoute) -> bool:
    parameters = inspect.signature(route.endpoint).parameters
    return (
        inspect.iscoroutinefunction(route.endpoint)
        and len(parameters) == 1
        and route.dependant.request_param_name in parameters
        and not route.dependant.dependencies
    )


def respond(result: RouteResult) -> Response:
    """A metered route's answer: its SSE stream, or its JSON body."""
    if result.stream is not None:
        return SSEResponse(result.stream, headers=result.headers)
    return json_response(result.body, headers=result.headers)


def error_response(error: GatewayError) -> Response:
    return json_response(error.to_dict(), status_code=error.status_code, headers=error.headers)


class SSEResponse(StreamingResponse):
    """Server-sent events, sent as produced. Whatever way the response ends (done,
    failed, client gone) the body iterator is closed at once, so its `finally` cancels
    the upstream and writes the usage record before the request is over."""

    media_type = "text/event-stream"

    def __init__(
        self, content: AsyncIterator[bytes], *, headers: Mapping[str, str] | None = None
    ) -> None:
        base = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        super().__init__(content, headers={**base, **(headers or {})})
        self._iterator = content

    async def stream_response(self, send: Send) -> None:
        try:
            await super().stream_response(send)
        finally:
            with anyio.CancelScope(shield=True):
                await aclose_of(self._iterator)


class RequestContextMiddleware:
    """Gives every request an id (echoed as `x-request-id`) and refuses bodies over the
    size limit with 413, whether or not they declare a Content-Length."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = secrets.token_hex(16)  # 128 random bits, as uuid4().hex less its checks
        scope.setdefault("state", {})["request_id"] = request_id
        header = (b"x-request-id", request_id.encode())
        limit = self.max_body_bytes

        if _declared_length(scope) > limit:
            response = error_response(_too_large(limit))
            response.headers["x-request-id"] = request_id
            await response(scope, receive, send)
            return

        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _too_large(limit)
            return message

        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message["headers"] = [*message.get("headers", []), header]
            await send(message)

        try:
            await self.app(scope, limited_receive, send_with_id)
        except Exception:
            # The last resort (the app's own handlers answer every known failure): one
            # 500 in OpenAI's format, and the connection closed cleanly rather than reset.
            logger.exception("unhandled error", extra={"request_id": request_id})
            if started:
                raise
            response = error_response(InternalError("The gateway had an internal error."))
            response.headers["connection"] = "close"
            response.headers["x-request-id"] = request_id
            await response(scope, receive, send)


def _declared_length(scope: Scope) -> int:
    """The request's Content-Length, 0 when it declares none (or none that is a number)."""
    for name, value in scope["headers"]:
        if name == b"content-length" and value.isdigit():
            return int(value)
    return 0


def _too_large(limit: int) -> RequestTooLargeError:
    return RequestTooLargeError(f"Request body is larger than the limit of {limit} bytes.")
