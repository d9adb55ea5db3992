"""HTTP for chat completions: thin; the work is in service.py.

The body is read raw and parsed by the service (orjson, bounded, validated), so every
authenticated request, valid or not, is metered; its schema is still documented.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from gateway.chat.protocol import ChatCompletion, ChatCompletionRequest, ErrorResponse
from gateway.deps import ChatServiceDep, CurrentKey, RequestId
from gateway.http import SSEResponse, json_response

router = APIRouter(tags=["chat"])

_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse}
    for status in (400, 401, 403, 404, 413, 429, 500, 502, 503, 504)
}
# The request body's schema, for /docs (components are added by the app factory).
REQUEST_SCHEMA = ChatCompletionRequest.model_json_schema(
    ref_template="#/components/schemas/{model}"
)
BODY_SCHEMAS: dict[str, Any] = {
    **REQUEST_SCHEMA.pop("$defs", {}),
    ChatCompletionRequest.__name__: REQUEST_SCHEMA,
}


@router.post(
    "/v1/chat/completions",
    response_model=ChatCompletion,
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "chat.completion, or SSE"},
        **_ERRORS,
    },
    summary="Create a chat completion",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {"$ref": f"#/components/schemas/{ChatCompletionRequest.__name__}"}
                }
            },
        }
    },
)
@router.post("/chat/completions", include_in_schema=False)
async def create_chat_completion(
    request: Request, key: CurrentKey, service: ChatServiceDep, request_id: RequestId
) -> Response:
    result = await service.create(request.body, key=key, request_id=request_id)
    if result.stream is not None:
        return SSEResponse(result.stream, headers=result.headers)
    return json_response(result.body, headers=result.headers)
