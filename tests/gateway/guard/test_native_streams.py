"""Output screening on models whose upstream serves the Responses and Messages APIs itself
(`native_routes`): the native stream is screened window by window exactly as the
translated one, so a flagged completion ends the same way for the client and the record."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Gateway, running_gateway
from tests.gateway.guard.conftest import guard_config
from tests.support.native import comparable
from tests.support.sdk import anthropic_client, openai_client

TRANSLATED, NATIVE = "qwen3", "qwen3-native"
LIGHTHOUSES = "Tell me about lighthouses."  # its simulated completion holds "coffee" (S6)


@pytest.fixture(scope="module")
def guarded_native(
    dynamodb: str, guard_tokenizers: Path, model_sim: str, guard_sim: str, slow_guard_sim: str
) -> Iterator[Gateway]:
    config = json.loads(guard_config(model_sim, guard_sim, slow_guard_sim))
    upstream = {"type": "openai", "base_url": model_sim, "model": "qwen3"}
    config["models"].append(
        {
            "id": NATIVE,
            "tokenizer": "qwen3",
            "upstream": upstream,
            "native_routes": ["responses", "messages"],
        }
    )
    [strict] = [p for p in config["guard_policies"] if p["id"] == "strict"]
    strict["models"].append(NATIVE)  # the translated model's policy, on both
    with running_gateway(guard_tokenizers, model_sim, models_config=json.dumps(config)) as gateway:
        # Warm: a cold instance screens its first stream's windows by an estimate until the
        # tokenizer is loaded (guard/stream.py), so the two paths' windows would differ.
        sdk = openai_client(base_url=gateway.base_url, api_key=gateway.new_key(), max_retries=0)
        sdk.chat.completions.create(
            model=TRANSLATED, messages=[{"role": "user", "content": "Hi"}], max_tokens=1
        )
        yield gateway


def response_events(gateway: Gateway, key: str, model: str) -> list[dict[str, Any]]:
    sdk = openai_client(base_url=gateway.base_url, api_key=key, max_retries=0, timeout=30)
    with sdk.responses.stream(model=model, input=LIGHTHOUSES) as stream:
        events = [e.model_dump(mode="json", exclude_unset=True) for e in stream]
    request_id = events[-1]["response"]["id"].removeprefix("resp_")
    return list(comparable(events, request_id=request_id, model=model))


def test_a_flagged_native_response_stream_ends_as_the_translated_one(
    guarded_native: Gateway,
) -> None:
    key = guarded_native.new_key()
    translated = response_events(guarded_native, key, TRANSLATED)
    native = response_events(guarded_native, key, NATIVE)
    assert native == translated
    last = native[-1]
    assert last["type"] == "response.incomplete"
    assert last["response"]["incomplete_details"] == {"reason": "content_filter"}
    text = "".join(e["delta"] for e in native if e["type"] == "response.output_text.delta")
    assert text.startswith("The lighthouse keeper") and "coffee" not in text
    outcomes = sorted(
        (r.model, r.guard_action, r.finish_reason) for r in guarded_native.records(key)
    )
    assert outcomes == [(m, "blocked_output", "content_filter") for m in (TRANSLATED, NATIVE)]


def test_a_flagged_native_message_stream_ends_as_the_translated_one(
    guarded_native: Gateway,
) -> None:
    key = guarded_native.new_key()
    sdk = anthropic_client(base_url=guarded_native.url, api_key=key, max_retries=0)
    texts: dict[str, str] = {}
    for model in (TRANSLATED, NATIVE):
        with sdk.messages.stream(
            model=model, messages=[{"role": "user", "content": LIGHTHOUSES}], max_tokens=200
        ) as stream:
            texts[model] = "".join(stream.text_stream)
            final = stream.get_final_message()
        assert final.stop_reason == "refusal"
    assert texts[NATIVE] == texts[TRANSLATED] and "coffee" not in texts[NATIVE]
    outcomes = sorted(
        (r.model, r.guard_action, r.finish_reason) for r in guarded_native.records(key)
    )
    assert outcomes == [(m, "blocked_output", "content_filter") for m in (TRANSLATED, NATIVE)]
