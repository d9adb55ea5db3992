"""Small routes: the models (list and one) and the health check."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path
from fastapi.responses import Response

from gateway.deps import CurrentKey, ResourcesDep
from gateway.errors import NotFoundError
from gateway.http import json_response
from gateway.models.registry import ModelConfig
from gateway.openapi import REQUIRES_KEY, errors
from gateway.pipeline import echo_id
from gateway.protocol import Health, Model, ModelList

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
async def list_models(key: CurrentKey, resources: ResourcesDep) -> Response:
    created = int(resources.started_at)
    data = [
        model_object(model, created=created)
        for model in resources.registry
        if key.allows_model(model.id)
    ]
    return json_response({"object": "list", "data": data})


@router.get(
    "/v1/models/{model_id}",
    tags=["models"],
    summary="Retrieve a model this key may use",
    description="One model object, as in the list; a model the key's allow-list does not "
    "permit is answered 404, as one that does not exist.",
    response_model=Model,
    responses=errors(401, 404, 500, 503),
    openapi_extra=REQUIRES_KEY,
)
@router.get("/v1/models/{model_id:path}", include_in_schema=False)
@router.get("/models/{model_id:path}", include_in_schema=False)
async def retrieve_model(
    model_id: Annotated[str, Path(description="The model's id, as requests name it.")],
    key: CurrentKey,
    resources: ResourcesDep,
) -> Response:
    model = resources.registry.get(model_id)
    if model is None or not key.allows_model(model_id):
        # A model the key may not use is reported as absent, as OpenAI does.
        raise NotFoundError(
            f"The model `{echo_id(model_id)}` does not exist or you do not have access to it.",
            param="model",
        )
    return json_response(model_object(model, created=int(resources.started_at)))


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
