"""A prompt over the model's max_model_len is a 400, from the gateway before it forwards
anything (the model declares its context length) and from gpusim as vLLM words it (a model
the gateway knows no length for): either way the client gets a 400. A request-sized prompt
whose lower bound alone is past the context is refused on the bound, before it is rendered
and counted (issue 27: 3.8M spaces, one BPE word for Mistral and TinyLlama, cost 380 MB
counted)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from devstack.tokenizers import CONTEXT_LENGTHS
from gateway.tokens import ChatTokenizer

from tests.conftest import Gateway, running_gateway
from tests.support.servers import serve_asgi

LIMIT = 64
# `make run`'s models, with the context lengths it declares (devstack.tokenizers)
SERVED = {"mistral": "mistral-7b-instruct-v0.1", "tinyllama": "tinyllama-1.1b-chat-v1.0"}
SPACES = " " * 3_800_000  # what a body of MAX_REQUEST_BYTES (4 MiB) carries
LONG = [{"role": "user", "content": "Tell me about rivers and mountains. " * 20}]


@pytest.fixture(scope="module")
def sim(tokenizers_dir: Path) -> Iterator[str]:
    from gpusim import SimConfig, create_app

    lengths = tuple((folder, CONTEXT_LENGTHS[model]) for model, folder in SERVED.items())
    config = SimConfig(
        tokenizers_dir=tokenizers_dir,
        models=("qwen3", *SERVED.values()),
        max_model_len=LIMIT,
        model_max_len=lengths,
    )
    with serve_asgi(create_app(config)) as url:
        yield url


@pytest.fixture(scope="module")
def gateway(dynamodb: str, tokenizers_dir: Path, sim: str) -> Iterator[Gateway]:
    upstream = {"type": "openai", "base_url": sim, "model": "qwen3"}
    models = [
        {"id": "declared", "tokenizer": "qwen3", "upstream": upstream, "max_model_len": LIMIT},
        {"id": "undeclared", "tokenizer": "qwen3", "upstream": upstream},
        *(
            {
                "id": model,
                "tokenizer": folder,
                "upstream": {**upstream, "model": folder},
                "max_model_len": CONTEXT_LENGTHS[model],
            }
            for model, folder in SERVED.items()
        ),
    ]
    with running_gateway(tokenizers_dir, sim, models_config=json.dumps({"models": models})) as gw:
        yield gw


def _ask(
    gateway: Gateway, key: str, model: str, messages: list[dict[str, Any]] = LONG
) -> httpx.Response:
    return httpx.post(
        gateway.base_url + "/chat/completions",
        json={"model": model, "messages": messages, "max_tokens": 8},
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


@pytest.mark.parametrize("model", sorted(SERVED))
def test_a_request_of_spaces_is_refused_on_its_bound(
    gateway: Gateway, sim: str, tokenizers_dir: Path, model: str
) -> None:
    """Mistral's and TinyLlama's templates copy a content whole, spaces at its ends
    included: the bound weighs them (3.8M spaces: 237,499 tokens), so the prompt is refused
    with the bound as its figure, not a count."""
    before = _requests(sim)
    response = _ask(gateway, gateway.new_key(), model, [{"role": "user", "content": SPACES}])
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "context_length_exceeded"
    assert str(CONTEXT_LENGTHS[model]) in error["message"]
    bound = ChatTokenizer(tokenizers_dir / SERVED[model]).lower_bound([SPACES])
    assert f"at least {bound} input tokens" in error["message"]  # the bound's, uncounted
    assert _requests(sim) == before


@pytest.mark.parametrize("model", sorted(SERVED))
def test_a_count_of_spaces_is_refused_on_its_bound(
    gateway: Gateway, tokenizers_dir: Path, model: str
) -> None:
    """Anthropic's count_tokens renders and counts the same conversation: past the context
    on its bound alone, it is refused as a Messages request is (in Anthropic's error
    format), not counted at 380 MB."""
    response = httpx.post(
        gateway.base_url + "/messages/count_tokens",
        json={"model": model, "messages": [{"role": "user", "content": SPACES}]},
        headers={"x-api-key": gateway.new_key(), "anthropic-version": "2023-06-01"},
        timeout=60,
    )
    assert response.status_code == 400
    body = response.json()
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
    bound = ChatTokenizer(tokenizers_dir / SERVED[model]).lower_bound([SPACES])
    assert f"at least {bound} input tokens" in body["error"]["message"]


@pytest.mark.parametrize("model", sorted(SERVED))
def test_an_assistant_turn_of_spaces_is_refused_on_its_bound(
    gateway: Gateway, sim: str, tokenizers_dir: Path, model: str
) -> None:
    """Their templates copy an assistant content whole too (Qwen3's cuts it at `</think>`,
    so its assistant turns are left out of the bound): 3.8M spaces in the conversation's
    history are refused on the bound as in a user turn."""
    before = _requests(sim)
    messages = [
        {"role": "user", "content": "Say nothing."},
        {"role": "assistant", "content": SPACES},
        {"role": "user", "content": "And now?"},
    ]
    response = _ask(gateway, gateway.new_key(), model, messages)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "context_length_exceeded"
    tokenizer = ChatTokenizer(tokenizers_dir / SERVED[model])
    bound = tokenizer.lower_bound([m["content"] for m in messages])
    assert f"at least {bound} input tokens" in error["message"]  # the bound's, uncounted
    assert _requests(sim) == before


@pytest.mark.parametrize("model", sorted(SERVED))
def test_text_parts_of_spaces_are_refused_on_their_bound(
    gateway: Gateway, sim: str, tokenizers_dir: Path, model: str
) -> None:
    """A content given as text parts reaches the template as their text joined by newlines
    (vLLM's string format): the bound reads that text, not only string contents."""
    before = _requests(sim)
    half = SPACES[: len(SPACES) // 2]
    parts = [{"type": "text", "text": half}, {"type": "text", "text": half}]
    response = _ask(gateway, gateway.new_key(), model, [{"role": "user", "content": parts}])
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "context_length_exceeded"
    bound = ChatTokenizer(tokenizers_dir / SERVED[model]).lower_bound([half + "\n" + half])
    assert f"at least {bound} input tokens" in error["message"]  # the bound's, uncounted
    assert _requests(sim) == before
