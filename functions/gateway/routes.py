"""Small routes: the model list and the health check."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from gateway.deps import CurrentKey, ServicesDep
from gateway.http import json_response

router = APIRouter()


@router.get("/v1/models", tags=["models"], summary="List the models this key may use")
@router.get("/models", include_in_schema=False)
async def list_models(key: CurrentKey, services: ServicesDep) -> Response:
    created = int(services.started_at)
    data = [
        {"id": model.id, "object": "model", "created": created, "owned_by": "gateway"}
        for model in services.registry
        if key.allows_model(model.id)
    ]
    return json_response({"object": "list", "data": data})


@router.get("/health", tags=["health"], summary="Liveness check (no dependencies called)")
async def health() -> Response:
    return json_response({"status": "ok"})
