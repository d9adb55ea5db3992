"""The cache salt and the priority the gateway sends (keys/tenancy.py), against gpusim's
KV cache: under `owner`, two owners never share a cached prefix block and two keys of
one owner do; under `key`, not even they; a key's priority reaches the upstream."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from gateway.keys import ApiKey
from gateway.keys.tenancy import Tenancy
from gateway.models.registry import ModelConfig
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Gateway, running_gateway
from tests.support.servers import serve_asgi

PROMPT = [{"role": "user", "content": "Summarise the quarterly report for me, please. " * 20}]


def _model(isolation: str) -> dict[str, Any]:
    return {"id": f"qwen3-{isolation}", "tokenizer": "qwen3", "prefix_cache_isolation": isolation}


@pytest.fixture(scope="module")
def sim(tokenizers_dir: Path) -> Iterator[str]:
    from gpusim import SimConfig, create_app

    config = SimConfig(tokenizers_dir=tokenizers_dir, models=("qwen3",), completion_tokens=2)
    with serve_asgi(create_app(config)) as url:
        yield url


@pytest.fixture(scope="module")
def gateway(dynamodb: str, tokenizers_dir: Path, sim: str) -> Iterator[Gateway]:
    upstream = {"type": "openai", "base_url": sim, "model": "qwen3"}
    models = [{**_model(i), "upstream": upstream} for i in ("owner", "key")]
    with running_gateway(tokenizers_dir, sim, models_config=json.dumps({"models": models})) as gw:
        yield gw


def _hits(sim: str) -> float:
    page = httpx.get(f"{sim}/metrics").text
    return sum(
        s.value
        for family in text_string_to_metric_families(page)
        for s in family.samples
        if s.name == "vllm:prefix_cache_hits_total"
    )


def _cached_by(gateway: Gateway, sim: str, secret: str, model: str) -> float:
    """Prompt tokens the simulator found cached for this request."""
    before = _hits(sim)
    response = httpx.post(
        gateway.base_url + "/chat/completions",
        json={"model": model, "messages": PROMPT, "cache_salt": "forged"},
        headers={"Authorization": f"Bearer {secret}"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    return _hits(sim) - before


def test_owner_isolation_shares_within_an_owner_only(gateway: Gateway, sim: str) -> None:
    alice_1, alice_2 = gateway.new_key(owner="alice"), gateway.new_key(owner="alice")
    bob = gateway.new_key(owner="bob")
    assert _cached_by(gateway, sim, alice_1, "qwen3-owner") == 0
    assert _cached_by(gateway, sim, alice_2, "qwen3-owner") > 0  # the same owner's blocks
    assert _cached_by(gateway, sim, bob, "qwen3-owner") == 0  # never another owner's


def test_key_isolation_shares_nothing_between_keys(gateway: Gateway, sim: str) -> None:
    one, two = gateway.new_key(owner="carol"), gateway.new_key(owner="carol")
    assert _cached_by(gateway, sim, one, "qwen3-key") == 0
    assert _cached_by(gateway, sim, two, "qwen3-key") == 0
    assert _cached_by(gateway, sim, one, "qwen3-key") > 0


def _key(**fields: Any) -> ApiKey:
    return ApiKey(key_id="key_1", key_hash="h", name="n", owner="acme", **fields)


def _config(**fields: Any) -> ModelConfig:
    upstream = {"type": "openai", "base_url": "http://127.0.0.1:1"}
    return ModelConfig.model_validate({"id": "m", "tokenizer": "t", "upstream": upstream, **fields})


def test_the_salt_is_a_keyed_hash_never_the_raw_id() -> None:
    model = _config(prefix_cache_isolation="owner")
    salt = Tenancy(b"s1").cache_salt(model, _key())
    assert salt is not None and "acme" not in salt
    assert Tenancy(b"s2").cache_salt(model, _key()) != salt  # keyed by the secret
    assert Tenancy(b"s1").cache_salt(_config(), _key()) is None  # `none`: no salt


def test_priority_goes_only_to_models_with_priority_scheduling() -> None:
    tenancy = Tenancy()
    assert tenancy.upstream_fields(_config(priority_scheduling=True), _key(priority=-5)) == {
        "priority": -5
    }
    assert tenancy.upstream_fields(_config(), _key(priority=-5)) == {}
    assert tenancy.upstream_fields(_config(priority_scheduling=True), _key()) == {}
