"""Small routes: the models (list and one) and the health check."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response

from gateway.config import ModelConfig
from gateway.deps import CurrentKey, ServicesDep
from gateway.errors import NotFoundError
from gateway.http import json_response
from gateway.serving import echo_id

router = APIRouter()


def model_object(model: ModelConfig, *, created: int) -> dict[str, Any]:
    """OpenAI's model object, plus (as vLLM adds `max_model_len`) the gateway's own
    `max_model_len` and the `routes` the model serves (chat, completions, embeddings)."""
    return {
        "id": model.id,
        "object": "model",
        "created": created,
        "owned_by": "gateway",
        "max_model_len": model.max_model_len,
        "routes": list(model.routes),
    }


@router.get("/v1/models", tags=["models"], summary="List the models this key may use")
@router.get("/models", include_in_schema=False)
async def list_models(key: CurrentKey, services: ServicesDep) -> Response:
    created = int(services.started_at)
    data = [
        model_object(model, created=created)
        for model in services.registry
        if key.allows_model(model.id)
    ]
    return json_response({"object": "list", "data": data})


@router.get("/v1/models/{model_id:path}", tags=["models"], summary="One model this key may use")
@router.get("/models/{model_id:path}", include_in_schema=False)
async def retrieve_model(model_id: str, key: CurrentKey, services: ServicesDep) -> Response:
    model = services.registry.get(model_id)
    if model is None or not key.allows_model(model_id):
        # A model the key may not use is reported as absent, as OpenAI does.
        raise NotFoundError(
            f"The model `{echo_id(model_id)}` does not exist or you do not have access to it.",
            param="model",
        )
    return json_response(model_object(model, created=int(services.started_at)))


@router.get("/health", tags=["health"], summary="Liveness check (no dependencies called)")
async def health() -> Response:
    return json_response({"status": "ok"})
