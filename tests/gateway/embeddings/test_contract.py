"""POST /v1/embeddings through the official `openai` client: OpenAI's shapes (float and
base64), prompt counts equal to transformers' for every tokenizer family, batches split
to the upstream's size and reassembled in order, one usage record with route
"embeddings" and no completion tokens."""

from __future__ import annotations

import base64
import struct
from pathlib import Path

import pytest

from tests.conftest import Gateway
from tests.support.routes import DIMENSIONS, client, families, reference_prompt_tokens
from tests.support.schemas import validate

TEXT = " Embeddings of Ünïcödé 🚀 text\nover two lines"


def _floats(encoded: str) -> list[float]:
    raw = base64.b64decode(encoded)
    return list(struct.unpack(f"<{len(raw) // 4}f", raw))


@pytest.mark.parametrize(
    "family",
    [
        "gpt2",
        "llama-3-8b-instruct",
        "mistral-7b-instruct-v0.1",
        "qwen3",
        "tinyllama-1.1b-chat-v1.0",
    ],
)
def test_string_input_counts_like_transformers(
    routes: tuple[Gateway, str], tokenizers_dir: Path, route_schemas: Path, family: str
) -> None:
    assert family in families(tokenizers_dir)
    gateway, _ = routes
    key = gateway.new_key()
    raw = client(gateway, key).embeddings.with_raw_response.create(
        model=f"embed-{family}", input=TEXT, encoding_format="float"
    )
    body = raw.http_response.json()
    validate(route_schemas, "CreateEmbeddingResponse", body)
    expected = reference_prompt_tokens(tokenizers_dir / family, TEXT)
    assert body["usage"] == {"prompt_tokens": expected, "total_tokens": expected}
    assert body["model"] == f"embed-{family}"
    [item] = body["data"]
    assert item["index"] == 0 and len(item["embedding"]) == DIMENSIONS
    [record] = gateway.records(key)
    assert record.route == "embeddings" and record.status == "completed"
    assert record.request_id == raw.headers["x-request-id"]
    assert (record.prompt_tokens, record.completion_tokens) == (expected, 0)
    assert record.upstream_prompt_tokens == record.gateway_prompt_tokens == expected


def test_list_split_into_batches_comes_back_in_order(
    routes: tuple[Gateway, str], tokenizers_dir: Path, route_schemas: Path
) -> None:
    gateway, _ = routes
    key = gateway.new_key()
    openai_client = client(gateway, key)
    texts = [f"input number {i}" + " word" * i for i in range(7)]  # 4 batches of <= 2
    batch = openai_client.embeddings.create(model="embed-qwen3", input=texts)
    singles = [
        openai_client.embeddings.create(model="embed-qwen3", input=t).data[0].embedding
        for t in texts
    ]
    assert [d.index for d in batch.data] == list(range(7))
    assert [d.embedding for d in batch.data] == singles
    folder = tokenizers_dir / "qwen3"
    expected = sum(reference_prompt_tokens(folder, t) for t in texts)
    assert batch.usage.prompt_tokens == batch.usage.total_tokens == expected
    records = gateway.records(key)
    assert len(records) == 8 and {r.route for r in records} == {"embeddings"}


def test_base64_is_little_endian_float32_of_the_same_vector(
    routes: tuple[Gateway, str], route_schemas: Path
) -> None:
    gateway, _ = routes
    openai_client = client(gateway, gateway.new_key())
    floats = openai_client.embeddings.create(
        model="embed-qwen3", input="same text", encoding_format="float"
    )
    raw = openai_client.embeddings.with_raw_response.create(
        model="embed-qwen3", input=["same text"], encoding_format="base64"
    )
    encoded = raw.http_response.json()["data"][0]["embedding"]
    assert isinstance(encoded, str)
    assert _floats(encoded) == pytest.approx(floats.data[0].embedding, rel=1e-6)
    # The client's default asks for base64 and decodes it.
    default = openai_client.embeddings.create(model="embed-qwen3", input="same text")
    assert default.data[0].embedding == pytest.approx(floats.data[0].embedding, rel=1e-6)


def test_token_id_inputs_count_their_length_and_dimensions_forwarded(
    routes: tuple[Gateway, str],
) -> None:
    gateway, _ = routes
    key = gateway.new_key()
    result = client(gateway, key).embeddings.create(
        model="embed-qwen3", input=[[1, 2, 3], [4, 5, 6, 7]], dimensions=16, user="u-1"
    )
    assert result.usage.prompt_tokens == 7
    assert [len(d.embedding) for d in result.data] == [16, 16]
    [record] = gateway.records(key)
    assert record.prompt_tokens == 7 and record.route == "embeddings"
