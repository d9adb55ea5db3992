"""The gateway through the official `openai` client, checked against OpenAI's schemas,
with token counts compared to transformers' own count and to DynamoDB's usage record."""

from __future__ import annotations

from pathlib import Path

import httpx
import openai
import pytest

from tests.conftest import TEST_MODELS, Gateway
from tests.support import reference
from tests.support.schemas import validate
from tests.support.sdk import openai_client
from tests.support.sse import events

MESSAGES = [
    {"role": "system", "content": "You are a terse assistant."},
    {"role": "user", "content": "Hello, world! Ünïcödé and emoji 🚀 included."},
    {"role": "assistant", "content": "Hi. What do you need?"},
    {
        "role": "user",
        "content": [{"type": "text", "text": "Part one."}, {"type": "text", "text": "Part two."}],
    },
]


def _reference_messages(model: str) -> list[dict[str, str]]:
    flat = []
    for m in MESSAGES:
        content = m["content"]
        if isinstance(content, list):
            content = "\n".join(p["text"] for p in content)
        flat.append({"role": m["role"], "content": content})
    if model == "mistral":  # its template allows no system role
        flat = flat[1:]
    return flat


def _messages(model: str) -> list[dict[str, object]]:
    return MESSAGES[1:] if model == "mistral" else MESSAGES


def client(gateway: Gateway, key: str) -> openai.OpenAI:
    return openai_client(base_url=gateway.base_url, api_key=key, max_retries=0, timeout=30)


@pytest.mark.parametrize("model", ["qwen3", "llama3", "tinyllama", "mistral"])
def test_non_streaming_usage_is_exact_and_recorded(
    gateway: Gateway, tokenizers_dir: Path, conformance_schemas: Path, model: str
) -> None:
    key = gateway.new_key()
    raw = client(gateway, key).chat.completions.with_raw_response.create(
        model=model, messages=_messages(model), max_tokens=12, seed=3
    )
    body = raw.http_response.json()
    validate(conformance_schemas, "CreateChatCompletionResponse", body)
    completion = raw.parse()

    folder = tokenizers_dir / TEST_MODELS[model]
    expected_prompt = reference.prompt_tokens(folder, _reference_messages(model))
    content = completion.choices[0].message.content or ""
    assert completion.model == model
    assert completion.id == f"chatcmpl-{raw.headers['x-request-id']}"
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == expected_prompt
    assert completion.usage.completion_tokens == 12
    assert reference.text_tokens(folder, content) == 12

    [record] = gateway.records(key)
    assert record.request_id == raw.headers["x-request-id"]
    assert record.status == "completed" and record.stream is False
    assert record.model == model
    assert (record.prompt_tokens, record.completion_tokens) == (expected_prompt, 12)
    assert record.upstream_prompt_tokens == record.gateway_prompt_tokens == expected_prompt
    assert record.upstream_completion_tokens == record.gateway_completion_tokens == 12
    assert record.total_tokens == expected_prompt + 12
    assert record.finish_reason == "length"
    assert record.latency_ms is not None and record.latency_ms > 0


@pytest.mark.parametrize("model", ["qwen3", "llama3", "tinyllama"])
def test_streaming_with_usage_conforms_and_matches_reference(
    gateway: Gateway, tokenizers_dir: Path, conformance_schemas: Path, model: str
) -> None:
    key = gateway.new_key()
    with gateway.stream_chat(
        key,
        {
            "model": model,
            "messages": _messages(model),
            "stream": True,
            "stream_options": {"include_usage": True},
        },
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-cache"
        request_id = response.headers["x-request-id"]
        received = [data for _, data in events(response)]

    assert received[-1] == "[DONE]"
    chunks = received[:-1]
    for chunk in chunks:
        validate(conformance_schemas, "CreateChatCompletionStreamResponse", chunk)
        assert chunk["id"] == f"chatcmpl-{request_id}"
        assert chunk["model"] == model
        assert chunk["object"] == "chat.completion.chunk"
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    usage_chunk = chunks[-1]
    assert usage_chunk["choices"] == []
    assert all(c["usage"] is None for c in chunks[:-1])
    finish = [c["choices"][0]["finish_reason"] for c in chunks[:-1] if c["choices"]]
    assert finish[-1] == "stop" and set(finish[:-1]) == {None}
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks[:-1])

    folder = tokenizers_dir / TEST_MODELS[model]
    expected_prompt = reference.prompt_tokens(folder, _reference_messages(model))
    # A natural stop also counts the EOS token, as vLLM does.
    expected_completion = reference.text_tokens(folder, text) + 1
    assert usage_chunk["usage"] == {
        "prompt_tokens": expected_prompt,
        "completion_tokens": expected_completion,
        "total_tokens": expected_prompt + expected_completion,
    }
    [record] = gateway.records(key)
    assert record.request_id == request_id and record.stream is True
    assert record.gateway_prompt_tokens == record.upstream_prompt_tokens == expected_prompt
    assert record.gateway_completion_tokens == record.upstream_completion_tokens
    assert record.completion_tokens == expected_completion
    assert record.ttft_ms is not None and record.ttft_ms <= record.latency_ms


def test_openai_client_streaming_without_usage(gateway: Gateway) -> None:
    key = gateway.new_key()
    stream = client(gateway, key).chat.completions.create(
        model="qwen3", messages=[{"role": "user", "content": "hi"}], stream=True, max_tokens=5
    )
    chunks = list(stream)
    assert all(getattr(c, "usage", None) is None for c in chunks)
    assert all(c.choices for c in chunks)  # the upstream's usage chunk was dropped
    assert chunks[-1].choices[0].finish_reason == "length"
    [record] = gateway.records(key)
    assert record.completion_tokens == 5 and record.upstream_completion_tokens == 5


def test_n_choices_and_stop(gateway: Gateway, tokenizers_dir: Path) -> None:
    key = gateway.new_key()
    c = client(gateway, key)
    first = c.chat.completions.create(
        model="qwen3", messages=[{"role": "user", "content": "hi"}], max_tokens=30
    )
    text = first.choices[0].message.content or ""
    stop_word = text.split()[3]
    stopped = c.chat.completions.create(
        model="qwen3",
        messages=[{"role": "user", "content": "hi"}],
        max_tokens=30,
        stop=[stop_word],
        n=2,
    )
    assert [ch.index for ch in stopped.choices] == [0, 1]
    assert stopped.choices[0].finish_reason == "stop"
    assert stop_word not in (stopped.choices[0].message.content or "")
    records = gateway.records(key)
    assert len(records) == 2
    assert records[1].completion_tokens == stopped.usage.completion_tokens  # type: ignore[union-attr]


def test_base_url_without_v1_and_models_and_docs(gateway: Gateway) -> None:
    key = gateway.new_key(models=("llama3", "qwen3"))
    headers = {"Authorization": f"Bearer {key}"}
    response = httpx.post(
        gateway.url + "/chat/completions",
        headers=headers,
        json={"model": "llama3", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2},
    )
    assert response.status_code == 200, response.text
    models = client(gateway, key).models.list()
    assert sorted(m.id for m in models.data) == ["llama3", "qwen3"]
    assert httpx.get(gateway.url + "/health").json() == {"status": "ok"}
    docs = httpx.get(gateway.url + "/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    spec = httpx.get(gateway.url + "/openapi.json").json()
    assert "/v1/chat/completions" in spec["paths"]


def test_model_params_and_extra_fields_are_forwarded(gateway: Gateway) -> None:
    key = gateway.new_key()
    completion = client(gateway, key).chat.completions.create(
        model="qwen3",
        messages=[{"role": "user", "content": "hi"}],
        extra_body={"model_params": {"max_tokens": 3, "temperature": 0.5}, "min_p": 0.1},
    )
    assert completion.usage is not None and completion.usage.completion_tokens == 3
