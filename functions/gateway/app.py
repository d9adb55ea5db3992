"""The app factory. Both Lambda entry points (Mangum and the Web Adapter) call it."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from gateway import __version__
from gateway.errors import (
    ConfigurationError,
    GatewayError,
    InternalError,
    UpstreamError,
    error_body,
)
from gateway.http import RequestContextMiddleware, error_response, json_response
from gateway.inputs import invalid_request
from gateway.messages.errors import error_body as anthropic_error_body
from gateway.observability import TraceHeaderMiddleware, configure_logging
from gateway.openapi import TAGS, install_openapi
from gateway.openapi_docs import install_docs
from gateway.resources import Resources
from gateway.routes.chat import COMPONENTS as CHAT_COMPONENTS
from gateway.routes.chat import router as chat_router
from gateway.routes.completions import COMPONENTS as COMPLETION_COMPONENTS
from gateway.routes.completions import router as completions_router
from gateway.routes.embeddings import COMPONENTS as EMBEDDING_COMPONENTS
from gateway.routes.embeddings import router as embeddings_router
from gateway.routes.messages import COMPONENTS as MESSAGES_COMPONENTS
from gateway.routes.messages import PATH_PREFIX as MESSAGES_PATH
from gateway.routes.messages import router as messages_router
from gateway.routes.models import router as misc_router
from gateway.routes.responses import COMPONENTS as RESPONSES_COMPONENTS
from gateway.routes.responses import router as responses_router
from gateway.routes.usage import router as usage_router
from gateway.settings import Settings
from gateway.snapstart import install_adapter_hooks, register_runtime_hooks, warm_up

logger = logging.getLogger(__name__)

# The shapes the routes name in /docs.
COMPONENTS = (
    *CHAT_COMPONENTS,
    *COMPLETION_COMPONENTS,
    *EMBEDDING_COMPONENTS,
    *RESPONSES_COMPONENTS,
    *MESSAGES_COMPONENTS,
)


def _anthropic(request: Request) -> bool:
    """Whether the request is on an Anthropic route, whose errors take Anthropic's shape."""
    path: str = request.scope["path"]
    return path == MESSAGES_PATH or path.startswith(MESSAGES_PATH + "/")


def _anthropic_error(request: Request, error: GatewayError) -> Response:
    request_id = request.scope.get("state", {}).get("request_id")
    body = anthropic_error_body(error, request_id=request_id)
    return json_response(body, status_code=error.status_code, headers=error.headers)


def _rendered(request: Request, error: GatewayError) -> Response:
    """The error in the route's API's shape: Anthropic's on /v1/messages*, else OpenAI's."""
    if _anthropic(request):
        return _anthropic_error(request, error)
    return error_response(error)


def _server_error(request: Request, message: str) -> Response:
    if _anthropic(request):
        return _anthropic_error(request, InternalError(message))
    body = error_body(message, type="server_error", code=None)
    return json_response(body, status_code=500)


def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
    """Starlette's own errors (an unknown route, a wrong method), in the route's shape."""
    if _anthropic(request):
        error = GatewayError(str(exc.detail), headers=dict(exc.headers or {}))
        error.status_code = exc.status_code
        return _anthropic_error(request, error)
    kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
    body = error_body(str(exc.detail), type=kind, code=None)
    return json_response(body, status_code=exc.status_code, headers=exc.headers)


def _install_error_handlers(app: FastAPI, resources: Resources) -> None:
    async def on_gateway_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, GatewayError)
        if not isinstance(exc, UpstreamError):
            # Refused before reaching an upstream: counted (metered routes also record it).
            resources.telemetry.rejected(
                error_type=exc.code or exc.type,
                status=exc.status_code,
                request_id=request.scope.get("state", {}).get("request_id"),
            )
        return _rendered(request, exc)

    async def on_validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        return await on_gateway_error(request, invalid_request(exc.errors()))

    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        if isinstance(exc.__cause__, GatewayError):  # e.g. 413 raised while reading the body
            return await on_gateway_error(request, exc.__cause__)
        return _http_error(request, exc)

    async def on_configuration_error(request: Request, exc: Exception) -> Response:
        logger.error("configuration error", extra={"error": str(exc)})
        return _server_error(request, "The gateway is misconfigured for this model.")

    async def on_unexpected(request: Request, _exc: Exception) -> Response:
        logger.exception("unhandled error")
        return _server_error(request, "The gateway had an internal error.")

    app.add_exception_handler(GatewayError, on_gateway_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(ConfigurationError, on_configuration_error)
    app.add_exception_handler(Exception, on_unexpected)


def _warn_unbounded(resources: Resources) -> None:
    """A model without `max_model_len` counts every prompt whole, however large: say so once
    (README, "Configuration"; docs/TOKENS.md, "What the request path costs")."""
    unbounded = [m.id for m in resources.registry if m.max_model_len is None]
    if unbounded:
        logger.warning(
            "models without max_model_len: their prompts are never refused before counting, "
            "and a request-sized one costs up to ~500 MB to count",
            extra={"models": unbounded},
        )


def create_app(settings: Settings | None = None, *, resources: Resources | None = None) -> FastAPI:
    """Build the app. No network I/O happens here unless the models config is an SSM
    parameter (read once, at init); tokenizers load now only with PRELOAD_TOKENIZERS."""
    settings = settings or (resources.settings if resources else Settings())
    configure_logging(settings.log_level)
    resources = resources or Resources.build(settings)
    _warn_unbounded(resources)
    if settings.preload_tokenizers:
        resources.preload_tokenizers()
        # Paying at init on purpose (StreamFunction, `make run`): also what the first
        # request would build, the DynamoDB client and the upstream backend's modules.
        warm_up(resources, forwards=True)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        yield {}
        await resources.close()

    app = FastAPI(
        title="GPU gateway",
        version=__version__,
        description="OpenAI-compatible chat completions, completions, embeddings and "
        "responses, and Anthropic's messages, for "
        'self-hosted GPU endpoints. Press "Authorize" and paste an API key to call the routes '
        "from this page.",
        openapi_tags=TAGS,
        lifespan=lifespan,
        # served by install_docs, under the API Gateway stage's prefix
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )
    install_openapi(app, components=COMPONENTS)
    app.state.resources = resources
    # Routes are matched in order, one by one, on every request: the API's first, the
    # busiest (chat) leading, and the pages for people last.
    for router in (chat_router, completions_router, embeddings_router, responses_router):
        app.include_router(router)
    for router in (messages_router, misc_router, usage_router):
        app.include_router(router)
    if settings.docs_enabled:  # DOCS_ENABLED=false: no /docs, /redoc or /openapi.json
        install_docs(app)
    _install_error_handlers(app, resources)
    install_adapter_hooks(app, settings, resources)
    register_runtime_hooks(resources)
    app.add_middleware(RequestContextMiddleware, max_body_bytes=settings.max_request_bytes)
    if resources.tracing.enabled:
        app.add_middleware(TraceHeaderMiddleware)
    return app
