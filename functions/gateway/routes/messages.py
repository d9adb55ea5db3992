"""HTTP for Anthropic's Messages API: thin; the work is in messages/service.py (through the
pipeline). Errors on these routes are in Anthropic's shape (app.py)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from gateway.deps import get_caller
from gateway.http import HttpClient, MeteredRoute, json_response, respond
from gateway.messages.errors import STATUS_TYPES
from gateway.messages.protocol import CountTokensRequest, MessagesRequest
from gateway.messages.service import ROUTE
from gateway.openapi import REQUIRES_ANTHROPIC_KEY, errors
from gateway.openapi_shapes import raw_body

router = APIRouter(tags=["messages"], route_class=MeteredRoute)

# The shapes the routes name in /docs (app.py gives them to install_openapi).
COMPONENTS = (MessagesRequest, CountTokensRequest)
# Where the app answers errors in Anthropic's shape.
PATH_PREFIX = "/v1/messages"

_MESSAGE_EXAMPLE: dict[str, Any] = {
    "id": "msg_0d3c",
    "type": "message",
    "role": "assistant",
    "content": [{"type": "text", "text": "Hello!"}],
    "model": "qwen3",
    "stop_reason": "end_turn",
    "stop_sequence": None,
    "usage": {
        "input_tokens": 12,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": 3,
    },
}
_MESSAGE: dict[str, Any] = {
    "type": "object",
    "description": "Anthropic's `Message` (the `anthropic` SDK's types).",
    "required": ["id", "type", "role", "content", "model", "stop_reason", "usage"],
    "properties": {
        "id": {"type": "string"},
        "type": {"type": "string", "enum": ["message"]},
        "role": {"type": "string", "enum": ["assistant"]},
        "content": {"type": "array", "items": {"type": "object"}},
        "model": {"type": "string"},
        "stop_reason": {"type": ["string", "null"]},
        "stop_sequence": {"type": ["string", "null"]},
        "usage": {"type": "object"},
    },
}
_ERROR: dict[str, Any] = {
    "type": "object",
    "description": "Anthropic's error shape.",
    "required": ["type", "error"],
    "properties": {
        "type": {"type": "string", "enum": ["error"]},
        "error": {
            "type": "object",
            "required": ["type", "message"],
            "properties": {"type": {"type": "string"}, "message": {"type": "string"}},
        },
        "request_id": {"type": "string"},
    },
}


def anthropic_errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` entries for these statuses, in Anthropic's error shape."""
    described = errors(*statuses)
    for status, entry in described.items():
        kind = STATUS_TYPES.get(int(status), "api_error")
        entry["content"] = {
            "application/json": {
                "schema": _ERROR,
                "example": {
                    "type": "error",
                    "error": {"type": kind, "message": entry["description"]},
                },
            }
        }
    return described


def _body(model: type[Any], example: dict[str, Any]) -> dict[str, Any]:
    extra = raw_body(model)
    extra["requestBody"]["content"]["application/json"]["example"] = example
    return extra


_OK: dict[str, Any] = {
    "description": "A `message`; with `stream: true`, Anthropic's server-sent events "
    "(`message_start`, `ping`, `content_block_start` / `_delta` / `_stop`, "
    "`message_delta` with the final usage, `message_stop`; an `error` event after a "
    "failure once the stream started).",
    "content": {
        "application/json": {"schema": _MESSAGE, "example": _MESSAGE_EXAMPLE},
        "text/event-stream": {
            "schema": {"type": "object", "required": ["type"]},
            "example": 'event: content_block_delta\ndata: {"type":"content_block_delta",'
            '"index":0,"delta":{"type":"text_delta","text":"Hello"}}\n\n',
        },
    },
}
_CONVERSATION = {"model": "qwen3", "messages": [{"role": "user", "content": "Say hello."}]}


@router.post(
    PATH_PREFIX,
    responses={200: _OK, **anthropic_errors(400, 401, 403, 404, 413, 429, 500, 502, 503, 504)},
    summary="Create a message",
    description="Anthropic's Messages API on a self-hosted model, translated to chat "
    "completions: the same keys, allow-lists, limits, prompt count (over the model's chat "
    "template), routing, guardrails and usage record (route `messages`) as chat. The key "
    "goes in `x-api-key` (or `Authorization: Bearer`); `anthropic-version` is accepted.",
    openapi_extra={
        **REQUIRES_ANTHROPIC_KEY,
        **_body(MessagesRequest, {**_CONVERSATION, "max_tokens": 64}),
    },
)
async def create_message(request: Request) -> Response:
    caller = await get_caller(request)
    resources = caller.resources
    result = await resources.pipeline.run(
        resources.messages, HttpClient(request), key=caller.key, request_id=caller.request_id
    )
    return respond(result)


@router.post(
    PATH_PREFIX + "/count_tokens",
    responses={
        200: {
            "description": '`{"input_tokens": N}`: the gateway\'s count of the conversation '
            "over the model's chat template, what a message of it is billed for its prompt.",
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "required": ["input_tokens"],
                        "properties": {"input_tokens": {"type": "integer"}},
                    },
                    "example": {"input_tokens": 12},
                }
            },
        },
        **anthropic_errors(400, 401, 403, 404, 413, 429, 500, 503),
    },
    summary="Count a message's input tokens",
    description="Authenticated and counted against the key's request rate limit, but not "
    "billed: no usage record is written and nothing is reserved.",
    openapi_extra={**REQUIRES_ANTHROPIC_KEY, **_body(CountTokensRequest, _CONVERSATION)},
)
async def count_tokens(request: Request) -> Response:
    caller = await get_caller(request)
    resources = caller.resources
    counter = resources.token_counter
    chat = counter.parse(await HttpClient(request).read_body())
    ctx = resources.pipeline.begin(ROUTE, key=caller.key, request_id=caller.request_id)
    model = resources.pipeline.resolve_model(ctx, chat.model, ROUTE)
    headers = await counter.admit(caller.key, request_id=caller.request_id)
    return json_response(await counter.count(chat, model), headers=headers)
