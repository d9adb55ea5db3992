"""A prompt over the model's max_model_len is a 400, from the gateway before it forwards
anything (the model declares its context length) and from gpusim as vLLM words it (a model
the gateway knows no length for): either way the client gets a 400."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import Gateway, running_gateway
from tests.support.servers import serve_asgi

LIMIT = 64
LONG = [{"role": "user", "content": "Tell me about rivers and mountains. " * 20}]


@pytest.fixture(scope="module")
def sim(tokenizers_dir: Path) -> Iterator[str]:
    from gpusim import SimConfig, create_app

    config = SimConfig(tokenizers_dir=tokenizers_dir, models=("qwen3",), max_model_len=LIMIT)
    with serve_asgi(create_app(config)) as url:
        yield url


@pytest.fixture(scope="module")
def gateway(dynamodb: str, tokenizers_dir: Path, sim: str) -> Iterator[Gateway]:
    upstream = {"type": "openai", "base_url": sim, "model": "qwen3"}
    models = [
        {"id": "declared", "tokenizer": "qwen3", "upstream": upstream, "max_model_len": LIMIT},
        {"id": "undeclared", "tokenizer": "qwen3", "upstream": upstream},
    ]
    with running_gateway(tokenizers_dir, sim, models_config=json.dumps({"models": models})) as gw:
        yield gw


def _ask(gateway: Gateway, key: str, model: str) -> httpx.Response:
    return httpx.post(
        gateway.base_url + "/chat/completions",
        json={"model": model, "messages": LONG, "max_tokens": 8},
        headers={"Authorization": f"Bearer {key}"},
        timeout=60,
    )


def _requests(sim: str) -> int:
    return int(httpx.get(f"{sim}/sim/stats").json()["requests"])


def test_the_gateway_refuses_before_forwarding(gateway: Gateway, sim: str) -> None:
    key = gateway.new_key()
    before = _requests(sim)
    response = _ask(gateway, key, "declared")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "context_length_exceeded" and str(LIMIT) in error["message"]
    assert _requests(sim) == before  # nothing reached the GPU


def test_gpusim_refuses_as_vllm_and_the_client_gets_its_400(gateway: Gateway, sim: str) -> None:
    direct = httpx.post(
        f"{sim}/v1/chat/completions",
        json={"model": "qwen3", "messages": LONG, "max_tokens": 8},
        timeout=60,  # the first request loads the simulator's tokenizer
    )
    assert direct.status_code == 400
    assert f"maximum context length is {LIMIT}" in direct.json()["error"]["message"]
    # Through the gateway, which knows no length for this model: the upstream's 400 (its
    # wording is not relayed: backends/wire.py words every upstream refusal alike).
    response = _ask(gateway, gateway.new_key(), "undeclared")
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"
