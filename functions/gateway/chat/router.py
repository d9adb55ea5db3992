"""HTTP for chat completions: thin; the work is in service.py."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response

from gateway.chat.protocol import ChatCompletion, ChatCompletionRequest, ErrorResponse
from gateway.deps import ChatServiceDep, CurrentKey, RequestId
from gateway.http import SSEResponse, json_response

router = APIRouter(tags=["chat"])

_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse} for status in (400, 401, 403, 404, 413, 429, 502, 504)
}


@router.post(
    "/v1/chat/completions",
    response_model=ChatCompletion,
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "chat.completion, or SSE"},
        **_ERRORS,
    },
    summary="Create a chat completion",
)
@router.post("/chat/completions", include_in_schema=False)
async def create_chat_completion(
    body: ChatCompletionRequest, key: CurrentKey, service: ChatServiceDep, request_id: RequestId
) -> Response:
    result = await service.create(body, key=key, request_id=request_id)
    if result.stream is not None:
        return SSEResponse(result.stream, headers=result.headers)
    return json_response(result.body, headers=result.headers)
