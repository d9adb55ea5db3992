"""Small routes: the model list and the health check."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from gateway.deps import CurrentKey, ServicesDep
from gateway.http import json_response
from gateway.openapi import REQUIRES_KEY, errors
from gateway.protocol import Health, ModelList

router = APIRouter()


@router.get(
    "/v1/models",
    tags=["models"],
    summary="List the models this key may use",
    description="The models of the gateway's models config that the key's allow-list "
    "permits (every model for a key without one).",
    response_model=ModelList,
    responses=errors(401, 500, 503),
    openapi_extra=REQUIRES_KEY,
)
@router.get("/models", include_in_schema=False)
async def list_models(key: CurrentKey, services: ServicesDep) -> Response:
    created = int(services.started_at)
    data = [
        {"id": model.id, "object": "model", "created": created, "owned_by": "gateway"}
        for model in services.registry
        if key.allows_model(model.id)
    ]
    return json_response({"object": "list", "data": data})


@router.get(
    "/health",
    tags=["health"],
    summary="Liveness check (no dependencies called)",
    description="Answers 200 while the function runs; it calls neither DynamoDB nor an "
    "upstream, so it says nothing about them. No key needed.",
    response_model=Health,
)
async def health() -> Response:
    return json_response({"status": "ok"})
