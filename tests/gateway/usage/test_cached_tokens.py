"""Cached prompt tokens, from the upstream to the client, the record, the rollups, the
dashboard and /v1/usage: gpusim reports `prompt_tokens_details.cached_tokens` as vLLM does
with --enable-prompt-tokens-details, and the same prompt sent twice is cached the second
time."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest
from gateway.dashboard.data import RollupReader

from tests.conftest import Gateway, running_gateway
from tests.support.servers import serve_asgi
from tests.support.usage import TABLE, drain

DOCUMENT = "The quarterly report covers revenue, costs and the outlook. " * 30


@pytest.fixture(scope="module")
def gateway(dynamodb: str, tokenizers_dir: Path) -> Iterator[Gateway]:
    from gpusim import SimConfig, create_app

    config = SimConfig(
        tokenizers_dir=tokenizers_dir,
        models=("qwen3",),
        completion_tokens=3,
        enable_prompt_tokens_details=True,
    )
    with serve_asgi(create_app(config)) as sim:
        upstream = {"type": "openai", "base_url": sim, "model": "qwen3"}
        models = {"models": [{"id": "qwen3", "tokenizer": "qwen3", "upstream": upstream}]}
        with running_gateway(tokenizers_dir, sim, models_config=json.dumps(models)) as gw:
            yield gw


def _post(gateway: Gateway, key: str, path: str, body: dict[str, Any]) -> httpx.Response:
    response = httpx.post(
        gateway.base_url + path, json=body, headers={"Authorization": f"Bearer {key}"}, timeout=30
    )
    assert response.status_code == 200, response.text
    return response


def _stream_usage(gateway: Gateway, key: str, body: dict[str, Any]) -> dict[str, Any]:
    with gateway.stream_chat(key, body) as response:
        lines = [line for line in response.iter_lines() if line.startswith("data: {")]
    return dict(json.loads(lines[-1][len("data: ") :])["usage"])


def test_cached_tokens_reach_the_client_the_record_and_the_rollups(gateway: Gateway) -> None:
    key = gateway.new_key()
    chat = {"model": "qwen3", "messages": [{"role": "user", "content": DOCUMENT}]}
    first = _post(gateway, key, "/chat/completions", chat).json()["usage"]
    second = _post(gateway, key, "/chat/completions", chat).json()["usage"]
    assert "prompt_tokens_details" not in first  # nothing cached: vLLM leaves it out
    cached = second["prompt_tokens_details"]["cached_tokens"]
    assert 0 < cached < second["prompt_tokens"]
    streamed = {**chat, "stream": True, "stream_options": {"include_usage": True}}
    assert _stream_usage(gateway, key, streamed)["prompt_tokens_details"] == {
        "cached_tokens": cached
    }
    completion = {"model": "qwen3", "prompt": DOCUMENT, "max_tokens": 3}
    _post(gateway, key, "/completions", completion)
    again = _post(gateway, key, "/completions", completion).json()["usage"]
    assert again["prompt_tokens_details"]["cached_tokens"] > 0

    records = gateway.records(key)
    by_cached = sorted(r.cached_tokens for r in records if r.cached_tokens is not None)
    assert len(records) == 5 and len(by_cached) == 3 and cached in by_cached
    total = sum(by_cached)

    drain(gateway.resources.aws.dynamodb)
    day = records[0].day
    usage = httpx.get(
        gateway.base_url + "/usage",
        params={"start": day, "end": day},
        headers={"Authorization": f"Bearer {key}"},
    ).json()
    assert usage["totals"]["cached_tokens"] == total
    reader = RollupReader(client=gateway.resources.aws.dynamodb, table=TABLE)
    today = date.fromisoformat(day)
    cells = reader.key_model_days(key_id=gateway.key_id(key), start=today, end=today)
    assert [cell.counts["cached_tokens"] for cell in cells] == [total]
