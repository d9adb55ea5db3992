"""HTTP for embeddings: thin; the work is in service.py."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from gateway.deps import get_caller
from gateway.embeddings.protocol import EmbeddingList, EmbeddingRequest
from gateway.http import HttpClient, MeteredRoute, respond
from gateway.openapi import REQUIRES_KEY, errors
from gateway.openapi_shapes import json_body, raw_body

router = APIRouter(tags=["embeddings"], route_class=MeteredRoute)

# The shapes the route names in /docs (app.py gives them to install_openapi).
COMPONENTS = (EmbeddingRequest, EmbeddingList)


@router.post(
    "/v1/embeddings",
    responses={
        200: {"description": "An embeddings `list`.", "content": json_body(EmbeddingList)},
        **errors(400, 401, 403, 404, 413, 429, 500, 502, 503, 504),
    },
    summary="Create embeddings",
    description="Embeddings from a model whose config lists the `embeddings` route, with "
    "chat's keys, allow-lists, limits and usage records. Inputs over the model's limit are a "
    "400 before forwarding; larger batches than the upstream takes are split and reassembled.",
    openapi_extra={**REQUIRES_KEY, **raw_body(EmbeddingRequest)},
)
@router.post("/embeddings", include_in_schema=False)
async def create_embeddings(request: Request) -> Response:
    caller = await get_caller(request)
    resources = caller.resources
    result = await resources.pipeline.run(
        resources.embeddings, HttpClient(request), key=caller.key, request_id=caller.request_id
    )
    return respond(result)
