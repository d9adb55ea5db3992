"""HTTP for legacy completions: thin; the work is in service.py. The body is read raw
(as chat's is), so every authenticated request, valid or not, is metered."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from gateway.chat.router import _ERRORS
from gateway.completions.protocol import Completion, CompletionRequest
from gateway.deps import CurrentKey, RequestId, ServicesDep
from gateway.http import SSEResponse, json_response

router = APIRouter(tags=["completions"])

_REQUEST_SCHEMA = CompletionRequest.model_json_schema(ref_template="#/components/schemas/{model}")
BODY_SCHEMAS: dict[str, Any] = {
    **_REQUEST_SCHEMA.pop("$defs", {}),
    CompletionRequest.__name__: _REQUEST_SCHEMA,
}


@router.post(
    "/v1/completions",
    response_model=Completion,
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "text_completion, or SSE"},
        **_ERRORS,
    },
    summary="Create a (legacy) text completion",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {"$ref": f"#/components/schemas/{CompletionRequest.__name__}"}
                }
            },
        }
    },
)
@router.post("/completions", include_in_schema=False)
async def create_completion(
    request: Request, key: CurrentKey, services: ServicesDep, request_id: RequestId
) -> Response:
    result = await services.completions.create(request.body, key=key, request_id=request_id)
    if result.stream is not None:
        return SSEResponse(result.stream, headers=result.headers)
    return json_response(result.body, headers=result.headers)
