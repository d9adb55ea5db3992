"""The response shapes /docs shows are the ones the gateway returns (issue 12).

Each answer below (buffered and streamed, text and tool calls, completions, embeddings,
errors) comes from a real gateway over the simulated endpoint and is validated against
the schema its own /openapi.json gives for that route, status and content type. The
shapes are the TypedDicts the code builds (chat/responses.py, completions/protocol.py,
embeddings/protocol.py, errors.py); this checks the values at run time, as mypy checks
the code.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator

from tests.conftest import Gateway

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The weather in a city.",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
]
HI = [{"role": "user", "content": "Say hello."}]


@pytest.fixture(scope="module")
def docs(routes: tuple[Gateway, str]) -> tuple[Gateway, str, dict[str, Any]]:
    gateway, _ = routes
    spec = httpx.get(gateway.url + "/openapi.json", timeout=10).json()
    return gateway, gateway.new_key(), spec


def documented(spec: dict[str, Any], path: str, status: int, content: str) -> Draft202012Validator:
    """A validator for what /openapi.json says `POST path` answers with."""
    response = spec["paths"][path]["post"]["responses"][str(status)]
    schema = response["content"][content]["schema"]
    # $refs resolve against the document's root: give the schema the document's components.
    return Draft202012Validator({**schema, "components": spec["components"]})


def post(gateway: Gateway, key: str, path: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(
        gateway.url + path, json=body, headers={"Authorization": f"Bearer {key}"}, timeout=60
    )


def events(gateway: Gateway, key: str, path: str, body: dict[str, Any]) -> Iterator[Any]:
    """The `data:` events of a streamed answer, decoded, up to [DONE]."""
    with httpx.stream(
        "POST",
        gateway.url + path,
        json=body,
        headers={"Authorization": f"Bearer {key}"},
        timeout=60,
    ) as response:
        assert response.status_code == 200, response.read()
        done = False
        for line in response.iter_lines():
            if not line.startswith("data: "):
                continue
            if line == "data: [DONE]":
                done = True
                continue
            yield json.loads(line[len("data: ") :])
        assert done


def check(validator: Draft202012Validator, instance: Any) -> None:
    errors = [f"{list(e.path)}: {e.message}" for e in validator.iter_errors(instance)]
    assert not errors, errors


@pytest.mark.parametrize("tools", [False, True], ids=["text", "tool_calls"])
def test_chat_bodies_are_the_documented_chat_completion(
    docs: tuple[Gateway, str, dict[str, Any]], tools: bool
) -> None:
    gateway, key, spec = docs
    body: dict[str, Any] = {"model": "qwen3", "messages": HI, "max_tokens": 24}
    if tools:
        body |= {"tools": TOOLS, "tool_choice": "required"}
    response = post(gateway, key, "/v1/chat/completions", body)
    assert response.status_code == 200, response.text
    answer = response.json()
    check(documented(spec, "/v1/chat/completions", 200, "application/json"), answer)
    assert ("tool_calls" in answer["choices"][0]["message"]) is tools


@pytest.mark.parametrize("tools", [False, True], ids=["text", "tool_calls"])
def test_chat_stream_events_are_the_documented_chunk(
    docs: tuple[Gateway, str, dict[str, Any]], tools: bool
) -> None:
    gateway, key, spec = docs
    body: dict[str, Any] = {
        "model": "qwen3",
        "messages": HI,
        "max_tokens": 24,
        "stream": True,
        "stream_options": {"include_usage": True},
        "logprobs": not tools,
    }
    if tools:
        body |= {"tools": TOOLS, "tool_choice": "required"}
    validator = documented(spec, "/v1/chat/completions", 200, "text/event-stream")
    chunks = list(events(gateway, key, "/v1/chat/completions", body))
    for chunk in chunks:
        check(validator, chunk)
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] > 0
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    assert any("tool_calls" in d for d in deltas) is tools


def test_completions_bodies_and_events_are_the_documented_text_completion(
    docs: tuple[Gateway, str, dict[str, Any]],
) -> None:
    gateway, key, spec = docs
    body: dict[str, Any] = {"model": "qwen3", "prompt": ["Once", "upon"], "max_tokens": 8}
    response = post(gateway, key, "/v1/completions", body)
    assert response.status_code == 200, response.text
    check(documented(spec, "/v1/completions", 200, "application/json"), response.json())
    validator = documented(spec, "/v1/completions", 200, "text/event-stream")
    streamed = {**body, "stream": True, "stream_options": {"include_usage": True}}
    chunks = list(events(gateway, key, "/v1/completions", streamed))
    for chunk in chunks:
        check(validator, chunk)
    assert chunks[-1]["choices"] == [] and "usage" in chunks[-1]


@pytest.mark.parametrize("encoding", ["float", "base64"])
def test_embeddings_are_the_documented_list(
    docs: tuple[Gateway, str, dict[str, Any]], encoding: str
) -> None:
    gateway, key, spec = docs
    body = {"model": "embed-qwen3", "input": ["a", "b"], "encoding_format": encoding}
    response = post(gateway, key, "/v1/embeddings", body)
    assert response.status_code == 200, response.text
    check(documented(spec, "/v1/embeddings", 200, "application/json"), response.json())


@pytest.mark.parametrize(
    ("status", "body", "key"),
    [
        (400, {"model": "qwen3"}, True),  # no messages
        (401, {"model": "qwen3", "messages": HI}, False),
        (404, {"model": "no-such-model", "messages": HI}, True),
    ],
)
def test_errors_are_the_documented_envelope(
    docs: tuple[Gateway, str, dict[str, Any]], status: int, body: dict[str, Any], key: bool
) -> None:
    gateway, secret, spec = docs
    response = post(gateway, secret if key else "sk-wrong", "/v1/chat/completions", body)
    assert response.status_code == status, response.text
    check(documented(spec, "/v1/chat/completions", status, "application/json"), response.json())


def test_the_documented_shapes_reject_what_the_gateway_must_not_send(
    docs: tuple[Gateway, str, dict[str, Any]],
) -> None:
    """The check above can fail: the documented shapes are not open-ended."""
    _, _, spec = docs
    chat = documented(spec, "/v1/chat/completions", 200, "application/json")
    good = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "m",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "hi", "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }
    check(chat, good)
    assert not chat.is_valid({**good, "object": "chat.completion.chunk"})
    assert not chat.is_valid({k: v for k, v in good.items() if k != "usage"})
    bad_finish = {**good, "choices": [{**good["choices"][0], "finish_reason": "abort"}]}
    assert not chat.is_valid(bad_finish)
    error = documented(spec, "/v1/chat/completions", 400, "application/json")
    assert not error.is_valid({"error": {"message": "m", "type": "t"}})  # param, code missing
