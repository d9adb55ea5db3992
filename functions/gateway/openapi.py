"""The OpenAPI description: honest statuses, a Bearer scheme and working examples.

- Every route lists the statuses it really answers with (`errors(...)`), each with OpenAI's
  error envelope and an example; FastAPI's automatic 422 is removed, because the gateway
  answers validation failures with a 400 (app.validation_error).
- `bearerAuth` (HTTP Bearer) is declared, and the routes that take a key require it, so
  Swagger UI's "Authorize" sends `Authorization: Bearer <key>`.
- Every request body has a working example (`REQUEST_EXAMPLES`, by its schema's name), so
  "Try it out" then "Execute" on the prefilled body succeeds against `make run`'s models.

openapi_docs.py serves the description and its pages (/openapi.json, /docs, /redoc).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from gateway.errors import ErrorResponse
from gateway.openapi_fields import FIELD_DOCS
from gateway.openapi_shapes import component, ref

BEARER = "bearerAuth"
# The key as Anthropic's clients send it (`x-api-key`), taken on every route.
API_KEY = "apiKeyAuth"
# `openapi_extra` of a route that needs an API key.
REQUIRES_KEY: dict[str, Any] = {"security": [{BEARER: []}]}
# `openapi_extra` of an Anthropic route: the key in `x-api-key`, or as a Bearer token.
REQUIRES_ANTHROPIC_KEY: dict[str, Any] = {"security": [{API_KEY: []}, {BEARER: []}]}

# status: (description, example error type, code, message)
_ERRORS: dict[int, tuple[str, str, str | None, str]] = {
    400: (
        "The request is invalid (a bad JSON body, a missing or out-of-range parameter, or "
        "a request the model's endpoint refused). Nothing was changed.",
        "invalid_request_error",
        None,
        "Missing required parameter: 'messages'.",
    ),
    401: (
        "No API key, an unknown one, or a revoked or expired one.",
        "authentication_error",
        "invalid_api_key",
        "Incorrect API key provided.",
    ),
    403: (
        "The key may not use this model (its allow-list).",
        "permission_error",
        "model_not_allowed",
        "This API key may not use the model `llama3`.",
    ),
    404: (
        "No model has this id.",
        "invalid_request_error",
        "model_not_found",
        "The model `gpt-9` does not exist or you do not have access to it.",
    ),
    413: (
        "The request body is larger than the gateway's limit (MAX_REQUEST_BYTES).",
        "invalid_request_error",
        "request_too_large",
        "Request body is larger than the limit of 1048576 bytes.",
    ),
    429: (
        "A limit of the key refused the request: requests or tokens per minute "
        "(`rate_limit_exceeded`, with `Retry-After` and `x-ratelimit-*` headers), or its "
        "monthly token budget (`insufficient_quota`). A request that could never fit "
        "(its reservation alone exceeds the limit) has no `Retry-After` and says how to fit.",
        "rate_limit_error",
        "rate_limit_exceeded",
        "Rate limit reached for requests per minute (RPM): limit 60, used 60. "
        "Please try again in 12s.",
    ),
    500: (
        "The gateway failed (a misconfigured model, or an internal error).",
        "server_error",
        None,
        "The gateway had an internal error.",
    ),
    502: (
        "The model's endpoint failed, was unreachable, or answered with an error.",
        "upstream_error",
        "upstream_error",
        "The model endpoint is unreachable: ClientConnectorError",
    ),
    503: (
        "DynamoDB (keys, limits or usage) is unavailable; retry later.",
        "server_error",
        "dependency_unavailable",
        "DynamoDB is unavailable (ThrottlingException)",
    ),
    504: (
        "The model's endpoint did not answer in time.",
        "upstream_error",
        "upstream_timeout",
        "The model endpoint timed out.",
    ),
}

_RATE_HEADERS: dict[str, Any] = {
    "Retry-After": {
        "description": "Seconds until the limit that refused the request resets (absent "
        "when waiting cannot help).",
        "schema": {"type": "integer"},
    },
    "x-should-retry": {
        "description": "`false` when retrying cannot succeed soon (read by the openai SDKs).",
        "schema": {"type": "string"},
    },
    **{
        f"x-ratelimit-{what}": {
            "description": f"The key's {what.replace('-', ' ')} (OpenAI's header).",
            "schema": {"type": "string"},
        }
        for what in (
            "limit-requests",
            "remaining-requests",
            "reset-requests",
            "limit-tokens",
            "remaining-tokens",
            "reset-tokens",
        )
    },
}
_PARAMS = {400: "messages", 403: "model", 404: "model"}

# The prefilled body of each request schema (by its component's name): requests that succeed
# as they are against `make run`'s models (qwen3 and its embedding model). A new route's
# request schema gets its example here.
REQUEST_EXAMPLES: dict[str, dict[str, Any]] = {
    "ChatCompletionRequest": {
        "model": "qwen3",
        "messages": [{"role": "user", "content": "Hello!"}],
        "max_tokens": 32,
    },
    "CompletionRequest": {"model": "qwen3", "prompt": "Say hello.", "max_tokens": 16},
    "EmbeddingRequest": {"model": "qwen3-embedding", "input": "Hello!"},
}


def _example(status: int) -> dict[str, Any]:
    _, kind, code, message = _ERRORS[status]
    param = _PARAMS.get(status)
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` entries for these error statuses: the envelope, a description, an example."""
    responses: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        responses[status] = {
            "description": _ERRORS[status][0],
            "content": {
                "application/json": {"schema": ref(ErrorResponse), "example": _example(status)}
            },
        }
        if status == 429:
            responses[status]["headers"] = _RATE_HEADERS
    return responses


TAGS: list[dict[str, Any]] = [
    {"name": "chat", "description": "OpenAI's chat completions, streamed or not."},
    {"name": "completions", "description": "OpenAI's legacy text completions."},
    {"name": "embeddings", "description": "Embeddings from embedding models."},
    {"name": "responses", "description": "OpenAI's Responses API, and stored responses."},
    {"name": "messages", "description": "Anthropic's Messages API."},
    {"name": "models", "description": "The models a key may use."},
    {"name": "usage", "description": "A key's own usage and limits."},
    {"name": "health", "description": "Liveness."},
]


def _describe_fields(schema: dict[str, Any]) -> None:
    components = schema.get("components", {}).get("schemas", {})
    for name, docs in FIELD_DOCS.items():
        for variant in (name, f"{name}-Input", f"{name}-Output"):
            properties = components.get(variant, {}).get("properties", {})
            for field, text in docs.items():
                if field in properties:
                    properties[field].setdefault("description", text)


def _fix_responses(schema: dict[str, Any]) -> None:
    """Drop FastAPI's automatic 422, and restore the examples' nulls (FastAPI's encoder
    drops None values, but the envelope always has all four fields)."""
    for path in schema.get("paths", {}).values():
        for operation in path.values():
            responses = operation.get("responses", {})
            responses.pop("422", None)
            for status, response in responses.items():
                content = response.get("content", {}).get("application/json", {})
                if (
                    int(status) in _ERRORS
                    and "example" in content
                    and content.get("schema") == ref(ErrorResponse)  # not Anthropic's shape
                ):
                    content["example"] = _example(int(status))
    components = schema.get("components", {}).get("schemas", {})
    text = json.dumps(schema.get("paths", {}))
    for name in ("HTTPValidationError", "ValidationError"):
        if f"#/components/schemas/{name}" not in text:
            components.pop(name, None)


def _add_request_examples(schema: dict[str, Any], examples: Mapping[str, Any]) -> None:
    """Each JSON request body whose schema is a component named in `examples` gets it."""
    for path in schema.get("paths", {}).values():
        for operation in path.values():
            body = operation.get("requestBody", {}).get("content", {}).get("application/json")
            name = str((body or {}).get("schema", {}).get("$ref", "")).rpartition("/")[2]
            if body is not None and name in examples:
                body["example"] = examples[name]


def install_openapi(app: FastAPI, *, components: Sequence[Any] = ()) -> None:
    """Replace `app.openapi` with one that adds the Bearer scheme and drops the 422s.
    `components` are the shapes the routes name by `ref` (request bodies, answers, stream
    chunks); the error envelope is always there."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                openapi_version=app.openapi_version,
                description=app.description,
                routes=app.routes,
                tags=app.openapi_tags,
                servers=app.servers,
            )
            schema.setdefault("components", {}).setdefault("schemas", {}).update(
                {
                    name: part
                    for shape in (*components, ErrorResponse)
                    for name, part in component(shape).items()
                }
            )
            _fix_responses(schema)
            _describe_fields(schema)
            _add_request_examples(schema, REQUEST_EXAMPLES)
            schemes = schema.setdefault("components", {}).setdefault("securitySchemes", {})
            schemes[BEARER] = {
                "type": "http",
                "scheme": "bearer",
                "description": "An API key from `gateway keys create`, sent as "
                "`Authorization: Bearer <key>`.",
            }
            schemes[API_KEY] = {
                "type": "apiKey",
                "in": "header",
                "name": "x-api-key",
                "description": "An API key sent as `x-api-key: <key>` (Anthropic's clients).",
            }
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
