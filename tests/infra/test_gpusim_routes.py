"""The simulated endpoint's /v1/completions and /v1/embeddings, as vLLM serves them:
prompts counted by transformers' AutoTokenizer with special tokens, text_completion
shapes, deterministic embeddings, and TEI's refusal of batches over its limit."""

from __future__ import annotations

import base64
import json
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from gpusim import SimConfig, create_app

from tests.support.routes import reference_prompt_tokens
from tests.support.servers import serve_asgi

TEXT = " A leading space, Ünïcödé 🚀\nand two lines"


@pytest.fixture(scope="module")
def sim(tokenizers_dir: Path) -> Iterator[str]:
    config = SimConfig(tokenizers_dir=tokenizers_dir, embedding_dimensions=8, max_batch_size=3)
    with serve_asgi(create_app(config)) as url:
        yield url


def post(sim: str, path: str, **body: Any) -> httpx.Response:
    return httpx.post(sim + path, json=body, timeout=30)


@pytest.mark.parametrize("family", ["gpt2", "mistral-7b-instruct-v0.1", "tinyllama-1.1b-chat-v1.0"])
def test_completion_prompt_tokens_are_transformers(
    sim: str, tokenizers_dir: Path, family: str
) -> None:
    body = post(sim, "/v1/completions", model=family, prompt=TEXT, max_tokens=3).json()
    assert body["object"] == "text_completion" and body["id"].startswith("cmpl-")
    assert body["usage"]["prompt_tokens"] == reference_prompt_tokens(tokenizers_dir / family, TEXT)
    assert body["usage"]["completion_tokens"] == 3
    assert body["choices"][0]["finish_reason"] == "length" and body["choices"][0]["text"]


def test_streamed_completion_puts_the_finish_on_the_last_text_chunk(sim: str) -> None:
    body = {"model": "qwen3", "prompt": [[1, 2], [3]], "max_tokens": 4, "n": 2, "stream": True}
    body["stream_options"] = {"include_usage": True}
    with httpx.stream("POST", sim + "/v1/completions", json=body, timeout=30) as response:
        lines = [line[6:] for line in response.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "[DONE]"
    chunks = [json.loads(line) for line in lines[:-1]]
    usage = chunks[-1]
    assert usage["choices"] == [] and usage["usage"]["prompt_tokens"] == 3
    assert usage["usage"]["completion_tokens"] == 4 * 4
    finished = [c["choices"][0]["index"] for c in chunks[:-1] if c["choices"][0]["finish_reason"]]
    assert sorted(finished) == [0, 1, 2, 3]
    assert all(c["object"] == "text_completion" for c in chunks)


def test_embeddings_are_deterministic_counted_and_base64(sim: str, tokenizers_dir: Path) -> None:
    one = post(sim, "/v1/embeddings", model="qwen3", input=TEXT).json()
    again = post(sim, "/v1/embeddings", model="qwen3", input=[TEXT, "other"]).json()
    assert one["data"][0]["embedding"] == again["data"][0]["embedding"]
    assert one["data"][0]["embedding"] != again["data"][1]["embedding"]
    assert len(one["data"][0]["embedding"]) == 8
    expected = reference_prompt_tokens(tokenizers_dir / "qwen3", TEXT)
    assert one["usage"]["prompt_tokens"] == one["usage"]["total_tokens"] == expected
    encoded = post(sim, "/v1/embeddings", model="qwen3", input=TEXT, encoding_format="base64")
    raw = base64.b64decode(encoded.json()["data"][0]["embedding"])
    floats = struct.unpack(f"<{len(raw) // 4}f", raw)
    assert floats == pytest.approx(one["data"][0]["embedding"], rel=1e-6)


def test_embeddings_batch_over_the_limit_is_413(sim: str) -> None:
    response = post(sim, "/v1/embeddings", model="qwen3", input=["a", "b", "c", "d"])
    assert response.status_code == 413
    assert "maximum allowed batch size 3" in response.json()["error"]["message"]
