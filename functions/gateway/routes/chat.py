"""HTTP for chat completions: thin; the work is in service.py.

The body is read raw and parsed by the service (orjson, bounded, validated), so every
authenticated request, valid or not, is metered; its schema is still documented.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from gateway.chat.protocol import ChatCompletionRequest
from gateway.chat.responses import ChatCompletion, ChatCompletionChunk
from gateway.deps import get_caller
from gateway.http import HttpClient, MeteredRoute, respond
from gateway.openapi import REQUIRES_KEY, errors
from gateway.openapi_shapes import event_stream, json_body, raw_body

router = APIRouter(tags=["chat"], route_class=MeteredRoute)

# The shapes the route names in /docs (app.py gives them to install_openapi).
COMPONENTS = (ChatCompletionRequest, ChatCompletion, ChatCompletionChunk)
_OK: dict[str, Any] = {
    "description": "A `chat.completion` object; with `stream: true`, server-sent events: "
    "one `chat.completion.chunk` per `data:` event, then `data: [DONE]`. A failure after "
    'the stream started arrives as one last `data: {"error": ...}` event. Rate-limited '
    "keys get `x-ratelimit-*` headers; every answer has `x-request-id`.",
    "content": {
        **json_body(ChatCompletion),
        **event_stream(
            ChatCompletionChunk,
            'data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"m",'
            '"choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":null}]}\n\n'
            "data: [DONE]\n\n",
        ),
    },
}


@router.post(
    "/v1/chat/completions",
    responses={200: _OK, **errors(400, 401, 403, 404, 413, 429, 500, 502, 503, 504)},
    summary="Create a chat completion",
    description="OpenAI's chat completions on a self-hosted model. The gateway checks the "
    "key, its model allow-list and limits, counts the prompt's tokens with the model's own "
    "chat template, reserves prompt plus `max_tokens` against the key's limits (a request "
    "without `max_tokens` gets DEFAULT_MAX_TOKENS, 4096 by default, sent upstream too), "
    "forwards to the model's endpoint and records the usage.",
    openapi_extra={**REQUIRES_KEY, **raw_body(ChatCompletionRequest)},
)
@router.post("/chat/completions", include_in_schema=False)
async def create_chat_completion(request: Request) -> Response:
    caller = await get_caller(request)
    resources = caller.resources
    result = await resources.pipeline.run(
        resources.chat, HttpClient(request), key=caller.key, request_id=caller.request_id
    )
    return respond(result)
