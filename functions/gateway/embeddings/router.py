"""HTTP for embeddings: thin; the work is in service.py."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from gateway.chat.router import _ERRORS
from gateway.deps import CurrentKey, RequestId, ServicesDep
from gateway.embeddings.protocol import EmbeddingList, EmbeddingRequest
from gateway.http import json_response

router = APIRouter(tags=["embeddings"])

_REQUEST_SCHEMA = EmbeddingRequest.model_json_schema(ref_template="#/components/schemas/{model}")
BODY_SCHEMAS: dict[str, Any] = {
    **_REQUEST_SCHEMA.pop("$defs", {}),
    EmbeddingRequest.__name__: _REQUEST_SCHEMA,
}


@router.post(
    "/v1/embeddings",
    response_model=EmbeddingList,
    responses=_ERRORS,
    summary="Create embeddings",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {"$ref": f"#/components/schemas/{EmbeddingRequest.__name__}"}
                }
            },
        }
    },
)
@router.post("/embeddings", include_in_schema=False)
async def create_embeddings(
    request: Request, key: CurrentKey, services: ServicesDep, request_id: RequestId
) -> Response:
    result = await services.embeddings.create(request.body, key=key, request_id=request_id)
    return json_response(result.body, headers=result.headers)
