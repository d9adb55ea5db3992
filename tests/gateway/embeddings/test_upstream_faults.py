"""A faulty upstream behind the new routes: malformed embeddings or completions are a 502
with one usage record; a failing batch fails the whole request (no partial answer)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.conftest import Gateway, running_gateway
from tests.support.servers import serve_asgi

USAGE = {"prompt_tokens": 1, "total_tokens": 1}


def _embeddings(inputs: list[Any], fault: str) -> JSONResponse:
    if fault == "fail_batch" and "boom" in inputs:
        return JSONResponse({"error": {"message": "/srv/secret"}}, status_code=500)
    data = [
        {"index": i, "object": "embedding", "embedding": [0.5, 0.25]} for i in range(len(inputs))
    ]
    if fault == "missing_item":
        data = data[:-1]
    if fault == "string_values":
        data[0]["embedding"] = ["a", "b"]
    return JSONResponse({"object": "list", "data": data, "usage": USAGE})


async def upstream(request: Request) -> JSONResponse:
    body = json.loads(await request.body())
    fault = body["model"]
    if request.url.path.endswith("/embeddings"):
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        return _embeddings(inputs, fault)
    choice = {"index": 0, "text": 7 if fault == "int_text" else "ok", "finish_reason": "stop"}
    return JSONResponse({"object": "text_completion", "choices": [choice], "usage": None})


@pytest.fixture(scope="module")
def faulty(dynamodb: str, tokenizers_dir: Path) -> Iterator[Gateway]:
    app = Starlette(
        routes=[
            Route("/v1/embeddings", upstream, methods=["POST"]),
            Route("/v1/completions", upstream, methods=["POST"]),
        ]
    )
    with serve_asgi(app) as url:
        models = [
            {
                "id": fault,
                "tokenizer": "qwen3",
                "upstream": {"type": "openai", "base_url": url, "model": fault},
                "routes": ["embeddings", "completions"],
                "max_batch_size": 1,
            }
            for fault in ("missing_item", "string_values", "fail_batch", "int_text", "fine")
        ]
        config = json.dumps({"models": models})
        with running_gateway(tokenizers_dir, url, models_config=config) as gateway:
            yield gateway


def post(gateway: Gateway, key: str, route: str, **body: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"}
    return httpx.post(gateway.base_url + f"/{route}", json=body, headers=headers, timeout=30)


@pytest.mark.parametrize(
    ("route", "model", "payload"),
    [
        ("embeddings", "missing_item", {"input": ["a", "b"]}),
        ("embeddings", "string_values", {"input": "a"}),
        ("embeddings", "fail_batch", {"input": ["a", "boom", "c"]}),
        ("completions", "int_text", {"prompt": "a", "max_tokens": 2}),
    ],
)
def test_faulty_upstream_is_502_with_one_record(
    faulty: Gateway, route: str, model: str, payload: dict[str, Any]
) -> None:
    key = faulty.new_key()
    response = post(faulty, key, route, model=model, **payload)
    assert response.status_code == 502, response.text
    assert "/srv/secret" not in response.text
    assert response.json()["error"]["type"] == "upstream_error"
    [record] = faulty.records(key)
    assert record.route == route and record.status == "upstream_error"


def test_single_item_batches_are_reassembled(faulty: Gateway) -> None:
    key = faulty.new_key()
    response = post(faulty, key, "embeddings", model="fine", input=["a", "b", "c"])
    assert response.status_code == 200, response.text
    assert [d["index"] for d in response.json()["data"]] == [0, 1, 2]
    # Three batches, each reporting 1 prompt token: the upstream's sum is billed.
    [record] = faulty.records(key)
    assert record.upstream_prompt_tokens == 3 and record.prompt_tokens == 3
