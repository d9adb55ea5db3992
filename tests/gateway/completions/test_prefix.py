"""A completions request's prefix key (completions/prefix.py) with the real Qwen3
tokenizer, and the gateway routing a prompt that grows turn after turn to one replica of
three gpusim replicas, whose cache then serves its prefix."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
from gateway.backends.affinity import NO_HINT, prefix_key
from gateway.completions.prefix import KEY_TOKENS, route_hint
from gateway.completions.protocol import CompletionRequest
from gateway.settings import Settings
from gateway.tokens import ChatTokenizer, TokenizerStore

from tests.conftest import Gateway, running_gateway
from tests.support.servers import serve_asgi

DOCUMENT = "The quarterly report covers revenue, costs and the outlook for the region. " * 20


def _tokenizer(tokenizers_dir: Path) -> ChatTokenizer:
    return TokenizerStore(Settings(tokenizers_dir=tokenizers_dir)).get("qwen3")


def _key(tokenizer: ChatTokenizer, prompt: Any) -> bytes | None:
    request = CompletionRequest.model_validate({"model": "qwen3", "prompt": prompt})
    return route_hint(tokenizer, request).prefix


def test_a_prompt_that_grows_keeps_its_key(tokenizers_dir: Path) -> None:
    tokenizer = _tokenizer(tokenizers_dir)
    first = _key(tokenizer, DOCUMENT + "Question: what grew?")
    assert first is not None
    assert _key(tokenizer, DOCUMENT + "Question: what grew?\nAnswer: costs.\nAnd why?") == first
    assert _key(tokenizer, "A different report. " + DOCUMENT) != first


def test_the_key_is_the_leading_blocks_of_the_prompt_s_ids(tokenizers_dir: Path) -> None:
    tokenizer = _tokenizer(tokenizers_dir)
    ids = tokenizer.leading_ids(DOCUMENT, tokens=10**6)
    assert len(ids) > KEY_TOKENS
    assert _key(tokenizer, DOCUMENT) == prefix_key(ids[:KEY_TOKENS])
    assert _key(tokenizer, ids) == _key(tokenizer, DOCUMENT)  # token ids: the same key
    assert _key(tokenizer, [DOCUMENT, "another prompt"]) == _key(tokenizer, DOCUMENT)


def test_a_prompt_under_one_block_has_no_key(tokenizers_dir: Path) -> None:
    tokenizer = _tokenizer(tokenizers_dir)
    request = CompletionRequest.model_validate({"model": "qwen3", "prompt": "Say hi."})
    assert route_hint(tokenizer, request) is NO_HINT
    assert _key(tokenizer, list(range(15))) is None


@pytest.fixture(scope="module")
def three_replicas(dynamodb: str, tokenizers_dir: Path) -> Iterator[Gateway]:
    from gpusim import SimConfig, create_app

    config = SimConfig(
        tokenizers_dir=tokenizers_dir,
        models=("qwen3",),
        completion_tokens=4,
        enable_prompt_tokens_details=True,
    )
    with ExitStack() as stack:
        urls = [stack.enter_context(serve_asgi(create_app(config))) for _ in range(3)]
        endpoints = [
            {"type": "openai", "base_url": url, "model": "qwen3", "name": f"r{n}"}
            for n, url in enumerate(urls)
        ]
        models = {"models": [{"id": "qwen3", "tokenizer": "qwen3", "endpoints": endpoints}]}
        yield stack.enter_context(
            running_gateway(tokenizers_dir, urls[0], models_config=json.dumps(models))
        )


def _complete(gateway: Gateway, key: str, prompt: str, *, stream: bool) -> None:
    body: dict[str, Any] = {"model": "qwen3", "prompt": prompt, "max_tokens": 4}
    if stream:
        body["stream"] = True
    response = httpx.post(
        gateway.base_url + "/completions",
        json=body,
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )
    assert response.status_code == 200, response.text


def test_each_growing_prompt_stays_on_one_replica_and_hits_its_cache(
    three_replicas: Gateway,
) -> None:
    gateway = three_replicas
    key = gateway.new_key()
    for document in range(3):
        prompt = f"Report {document}. " + DOCUMENT
        for turn in range(4):
            prompt += f"\nQuestion {turn}: what changed in part {turn}?\nAnswer:"
            _complete(gateway, key, prompt, stream=turn % 2 == 1)
    records = sorted(gateway.records(key), key=lambda r: r.created_at)
    assert len(records) == 12
    for document in range(3):
        turns = records[document * 4 : document * 4 + 4]
        assert len({r.endpoint for r in turns}) == 1, [r.endpoint for r in turns]
        assert all((r.cached_tokens or 0) > 0 for r in turns[1:])  # its replica's cache
