"""GET /v1/models and /v1/models/{id}: OpenAI's model object for models the key may use
(with the gateway's max_model_len and the routes each model serves), 404 otherwise."""

from __future__ import annotations

from pathlib import Path

import openai
import pytest

from tests.conftest import Gateway
from tests.support.routes import client
from tests.support.schemas import validate


def test_retrieve_a_model_the_key_may_use(routes: tuple[Gateway, str], route_schemas: Path) -> None:
    gateway, _ = routes
    key = gateway.new_key(models=("qwen3", "embed-qwen3"))
    openai_client = client(gateway, key)
    raw = openai_client.models.with_raw_response.retrieve("embed-qwen3")
    body = raw.http_response.json()
    validate(route_schemas, "Model", body)
    assert body["id"] == "embed-qwen3" and body["object"] == "model"
    assert body["routes"] == ["embeddings"] and body["max_model_len"] == 512
    chat = openai_client.models.retrieve("qwen3")
    assert chat.id == "qwen3" and chat.owned_by == "gateway"
    assert chat.model_extra == {"max_model_len": 4096, "routes": ["chat", "completions"]}


def test_a_model_the_key_may_not_use_or_unknown_is_404(
    routes: tuple[Gateway, str], route_schemas: Path
) -> None:
    gateway, _ = routes
    openai_client = client(gateway, gateway.new_key(models=("qwen3",)))
    for model_id in ("embed-qwen3", "no-such-model", "org/with/slashes"):
        with pytest.raises(openai.NotFoundError) as caught:
            openai_client.models.retrieve(model_id)
        body = caught.value.response.json()
        validate(route_schemas, "ErrorResponse", body)
        assert body["error"]["code"] == "model_not_found"
        assert body["error"]["type"] == "invalid_request_error"
    with pytest.raises(openai.AuthenticationError):
        client(gateway, "sk-wrong").models.retrieve("qwen3")


def test_list_shows_routes_and_max_model_len(
    routes: tuple[Gateway, str], route_schemas: Path
) -> None:
    gateway, _ = routes
    models = {m.id: m for m in client(gateway, gateway.new_key()).models.list()}
    for model in models.values():
        validate(route_schemas, "Model", model.model_dump(exclude_none=True))
    assert models["embed-gpt2"].model_extra == {"max_model_len": 512, "routes": ["embeddings"]}
    assert models["short"].model_extra == {"max_model_len": 8, "routes": ["chat", "completions"]}
    narrow = client(gateway, gateway.new_key(models=("short",))).models.list()
    assert [m.id for m in narrow] == ["short"]
