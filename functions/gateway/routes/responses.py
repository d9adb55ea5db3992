"""HTTP for OpenAI's Responses API: thin; the work is in responses/service.py (through the
pipeline) and conversations/ (stored responses)."""

from __future__ import annotations

import functools
from typing import Annotated, Any

import anyio.to_thread
from fastapi import APIRouter, Path, Request
from fastapi.responses import Response

from gateway.conversations import response_not_found
from gateway.deps import Caller, CallerDep, get_caller
from gateway.http import HttpClient, MeteredRoute, json_response, respond
from gateway.openapi import REQUIRES_KEY, errors
from gateway.openapi_shapes import raw_body
from gateway.responses.protocol import ResponsesRequest
from gateway.responses.translate import deleted

router = APIRouter(tags=["responses"], route_class=MeteredRoute)

# The shapes the routes name in /docs (app.py gives them to install_openapi).
COMPONENTS = (ResponsesRequest,)

_RESPONSE_EXAMPLE: dict[str, Any] = {
    "id": "resp_0d3c",
    "object": "response",
    "created_at": 1767225600,
    "status": "completed",
    "model": "qwen3",
    "output": [
        {
            "type": "message",
            "id": "msg_0d3c_0",
            "status": "completed",
            "role": "assistant",
            "content": [{"type": "output_text", "text": "Hello!", "annotations": []}],
        }
    ],
    "usage": {
        "input_tokens": 12,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": 3,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 15,
    },
}
_RESPONSE: dict[str, Any] = {
    "type": "object",
    "description": "OpenAI's `Response` object (openai/openai-openapi).",
    "required": ["id", "object", "created_at", "status", "model", "output"],
    "properties": {
        "id": {"type": "string"},
        "object": {"type": "string", "enum": ["response"]},
        "created_at": {"type": "integer"},
        "status": {"type": "string"},
        "model": {"type": "string"},
        "output": {"type": "array", "items": {"type": "object"}},
        "usage": {"type": "object"},
    },
}
_EVENT: dict[str, Any] = {
    "type": "object",
    "description": "One named event (`event: <type>`), with its `sequence_number`.",
    "required": ["type", "sequence_number"],
    "properties": {"type": {"type": "string"}, "sequence_number": {"type": "integer"}},
}
_OK: dict[str, Any] = {
    "description": "A `response` object; with `stream: true`, named server-sent events "
    "from `response.created` to `response.completed` (or `response.incomplete`, or "
    "`response.failed` after a failure once the stream started). Rate-limited keys get "
    "`x-ratelimit-*` headers; every answer has `x-request-id`.",
    "content": {
        "application/json": {"schema": _RESPONSE, "example": _RESPONSE_EXAMPLE},
        "text/event-stream": {
            "schema": _EVENT,
            "example": 'event: response.output_text.delta\ndata: {"type":'
            '"response.output_text.delta","sequence_number":4,"item_id":"msg_0d3c_0",'
            '"output_index":0,"content_index":0,"delta":"Hello","logprobs":[]}\n\n',
        },
    },
}
_REQUEST_EXAMPLE = {"model": "qwen3", "input": "Say hello.", "max_output_tokens": 64}


def with_example(extra: dict[str, Any], example: dict[str, Any]) -> dict[str, Any]:
    """A raw_body `openapi_extra` with a working example request."""
    extra["requestBody"]["content"]["application/json"]["example"] = example
    return extra


@router.post(
    "/v1/responses",
    responses={200: _OK, **errors(400, 401, 403, 404, 413, 429, 500, 502, 503, 504)},
    summary="Create a response",
    description="OpenAI's Responses API on a self-hosted model, translated to chat "
    "completions: the same keys, allow-lists, limits, prompt count (over the model's chat "
    "template), routing, guardrails and usage record (route `responses`) as chat. "
    "`store` (default true) keeps the response for `previous_response_id` and GET, "
    "scoped to the key's owner; a follow-up turn is billed its whole expanded input.",
    openapi_extra={**REQUIRES_KEY, **with_example(raw_body(ResponsesRequest), _REQUEST_EXAMPLE)},
)
async def create_response(request: Request) -> Response:
    caller = await get_caller(request)
    resources = caller.resources
    result = await resources.pipeline.run(
        resources.responses, HttpClient(request), key=caller.key, request_id=caller.request_id
    )
    return respond(result)


async def _admit_one(caller: Caller) -> dict[str, str]:
    """One request against the key's rate limit (rpm; no tokens reserved, nothing billed):
    a 429 past it; its x-ratelimit headers (none for a key without limits)."""
    admission = await caller.resources.limits.admit_within(
        key=caller.key, reserve_tokens=0, request_id=caller.request_id
    )
    return admission.headers


ResponseId = Annotated[
    str,
    Path(description="A stored response's id (`resp_...`).", examples=["resp_0d3c"]),
]


@router.get(
    "/v1/responses/{response_id}",
    responses={
        200: {
            "description": "The stored `response`, as it was answered.",
            "content": {"application/json": {"schema": _RESPONSE, "example": _RESPONSE_EXAMPLE}},
        },
        **errors(401, 404, 429, 503),
    },
    summary="Get a stored response",
    description="A response this key's owner stored (`store` true, the default), until "
    "RESPONSES_RETENTION_DAYS after it was made. Another owner's is a 404, as an unknown one. "
    "Counted against the key's request rate limit (rpm), not billed.",
    openapi_extra=REQUIRES_KEY,
)
async def get_response(response_id: ResponseId, caller: CallerDep) -> Response:
    headers = await _admit_one(caller)
    store = caller.resources.conversations
    stored = await anyio.to_thread.run_sync(
        functools.partial(store.get, response_id=response_id, owner=caller.key.owner)
    )
    if stored is None or stored.response is None:
        raise response_not_found(response_id)
    return json_response(stored.response, headers=headers)


@router.delete(
    "/v1/responses/{response_id}",
    responses={
        200: {
            "description": "The response was deleted.",
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "required": ["id", "object", "deleted"],
                        "properties": {
                            "id": {"type": "string"},
                            "object": {"type": "string", "enum": ["response"]},
                            "deleted": {"type": "boolean"},
                        },
                    },
                    "example": deleted("resp_0d3c"),
                }
            },
        },
        **errors(401, 404, 429, 503),
    },
    summary="Delete a stored response",
    description="Deletes a response this key's owner stored; it can no longer be read or "
    "continued. Another owner's is a 404, as an unknown one, and is left alone. Counted "
    "against the key's request rate limit (rpm), not billed.",
    openapi_extra=REQUIRES_KEY,
)
async def delete_response(response_id: ResponseId, caller: CallerDep) -> Response:
    headers = await _admit_one(caller)
    store = caller.resources.conversations
    gone = await anyio.to_thread.run_sync(
        functools.partial(store.delete, response_id=response_id, owner=caller.key.owner)
    )
    if not gone:
        raise response_not_found(response_id)
    return json_response(deleted(response_id), headers=headers)
