"""POST /v1/completions through the official `openai` client: OpenAI's shapes, prompt
counts equal to transformers' (special tokens added, as vLLM counts them) for every
tokenizer family, and one usage record per request with route "completions"."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from tests.conftest import Gateway
from tests.support.routes import client, families, reference_prompt_tokens, validate_chunk
from tests.support.schemas import validate

PROMPT = " Once upon a time, Ünïcödé 🚀 and\n a second line"
SHARED_FAMILIES = ["gpt2", "llama-3-8b-instruct", "mistral-7b-instruct-v0.1", "qwen3"]
SHARED_FAMILIES += ["tinyllama-1.1b-chat-v1.0"]


def test_every_family_is_covered(tokenizers_dir: Path) -> None:
    assert set(families(tokenizers_dir)) <= set(SHARED_FAMILIES) | {"gpt2"}, (
        "a new tokenizer family in ../shared: add it to SHARED_FAMILIES"
    )


@pytest.mark.parametrize("family", SHARED_FAMILIES)
def test_non_streamed_completion_counts_like_transformers(
    routes: tuple[Gateway, str], tokenizers_dir: Path, route_schemas: Path, family: str
) -> None:
    gateway, _ = routes
    key = gateway.new_key()
    raw = client(gateway, key).completions.with_raw_response.create(
        model=family, prompt=PROMPT, max_tokens=7, seed=2
    )
    body = raw.http_response.json()
    validate(route_schemas, "CreateCompletionResponse", body)
    completion = raw.parse()
    expected = reference_prompt_tokens(tokenizers_dir / family, PROMPT)
    request_id = raw.headers["x-request-id"]
    assert completion.object == "text_completion" and completion.model == family
    assert completion.id == f"cmpl-{request_id}"
    assert completion.choices[0].text and completion.choices[0].finish_reason == "length"
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (expected, 7)
    [record] = gateway.records(key)
    assert record.route == "completions" and record.request_id == request_id
    assert record.status == "completed" and record.stream is False
    assert (record.prompt_tokens, record.completion_tokens) == (expected, 7)
    assert record.gateway_prompt_tokens == record.upstream_prompt_tokens == expected


@pytest.mark.parametrize("family", ["qwen3", "tinyllama-1.1b-chat-v1.0"])
def test_streamed_completion_chunks_usage_and_record(
    routes: tuple[Gateway, str], tokenizers_dir: Path, route_schemas: Path, family: str
) -> None:
    gateway, _ = routes
    key = gateway.new_key()
    with client(gateway, key).completions.with_streaming_response.create(
        model=family,
        prompt=PROMPT,
        max_tokens=6,
        stream=True,
        stream_options={"include_usage": True},
    ) as response:
        request_id = response.headers["x-request-id"]
        lines = [line for line in response.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    chunks = [json.loads(line[6:]) for line in lines[:-1]]
    for chunk in chunks:
        validate_chunk(route_schemas, chunk)
        assert chunk["object"] == "text_completion" and chunk["id"] == f"cmpl-{request_id}"
    *texts, usage_chunk = chunks
    assert usage_chunk["choices"] == []
    assert all("usage" not in c for c in texts)  # as vLLM: only the last chunk has usage
    assert [c["choices"][0]["finish_reason"] for c in texts][-1] == "length"
    expected = reference_prompt_tokens(tokenizers_dir / family, PROMPT)
    assert usage_chunk["usage"]["prompt_tokens"] == expected
    assert usage_chunk["usage"]["completion_tokens"] == 6
    [record] = gateway.records(key)
    assert record.route == "completions" and record.stream is True
    assert (record.prompt_tokens, record.completion_tokens) == (expected, 6)


def test_streamed_through_the_client_iterates_text(routes: tuple[Gateway, str]) -> None:
    gateway, _ = routes
    key = gateway.new_key()
    stream = client(gateway, key).completions.create(
        model="qwen3", prompt="Hello", max_tokens=5, stream=True
    )
    text = "".join(chunk.choices[0].text for chunk in stream if chunk.choices)
    assert text
    [record] = gateway.records(key)
    assert record.route == "completions" and record.completion_tokens == 5


def test_prompt_lists_and_token_ids_count_each_prompt(
    routes: tuple[Gateway, str], tokenizers_dir: Path
) -> None:
    gateway, _ = routes
    key = gateway.new_key()
    openai_client = client(gateway, key)
    prompts = ["First prompt.", " second one", "third"]
    batch = openai_client.completions.create(
        model="mistral-7b-instruct-v0.1", prompt=prompts, n=2, max_tokens=3
    )
    folder = tokenizers_dir / "mistral-7b-instruct-v0.1"
    assert batch.usage is not None
    assert batch.usage.prompt_tokens == sum(reference_prompt_tokens(folder, p) for p in prompts)
    assert sorted(c.index for c in batch.choices) == list(range(6))
    assert batch.usage.completion_tokens == 6 * 3
    ids = openai_client.completions.create(model="qwen3", prompt=[[1, 2, 3], [4, 5]], max_tokens=2)
    assert ids.usage is not None and ids.usage.prompt_tokens == 5
    records = gateway.records(key)
    assert [r.route for r in records] == ["completions", "completions"]


def test_default_max_tokens_is_sixteen_as_openai(routes: tuple[Gateway, str]) -> None:
    gateway, _ = routes
    key = gateway.new_key()
    body = {"model": "qwen3", "prompt": "Hi", "ignore_eos": True}
    response = httpx.post(
        gateway.base_url + "/completions",
        json=body,
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    assert response.json()["usage"]["completion_tokens"] == 16
