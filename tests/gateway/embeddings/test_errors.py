"""Errors on the new routes, in OpenAI's format, each (once authenticated) with its usage
record and route; limits shared across chat, completions and embeddings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import Gateway
from tests.support.routes import SHORT_LIMIT

BODIES: dict[str, dict[str, Any]] = {
    "completions": {"model": "qwen3", "prompt": "Hello", "max_tokens": 2},
    "embeddings": {"model": "embed-qwen3", "input": "Hello"},
}
LONG_TEXT = "word " * 40


def post(gateway: Gateway, route: str, key: str | None, **body: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.post(gateway.base_url + f"/{route}", json=body, headers=headers, timeout=30)


def sim_requests(sim_url: str) -> int:
    return int(httpx.get(sim_url + "/sim/stats", timeout=10).json()["requests"])


def _error(response: httpx.Response, schemas: Path, status: int) -> dict[str, Any]:
    from tests.support.schemas import validate

    assert response.status_code == status, response.text
    validate(schemas, "ErrorResponse", response.json())
    error: dict[str, Any] = response.json()["error"]
    return error


@pytest.mark.parametrize("route", ["completions", "embeddings"])
def test_401_403_404_in_openai_format(
    routes: tuple[Gateway, str], route_schemas: Path, route: str
) -> None:
    gateway, _ = routes
    body = BODIES[route]
    assert _error(post(gateway, route, None, **body), route_schemas, 401)["type"] == (
        "authentication_error"
    )
    bad_key = post(gateway, route, "sk-not-a-real-key", **body)
    assert _error(bad_key, route_schemas, 401)["code"] == "invalid_api_key"
    narrow = gateway.new_key(models=("gpt2", "embed-gpt2"))
    denied = _error(post(gateway, route, narrow, **body), route_schemas, 403)
    assert denied["code"] == "model_not_allowed" and denied["param"] == "model"
    key = gateway.new_key()
    missing = _error(post(gateway, route, key, **{**body, "model": "nope"}), route_schemas, 404)
    assert missing["code"] == "model_not_found"
    records = gateway.records(narrow) + gateway.records(key)
    assert [(r.route, r.http_status, r.total_tokens) for r in records] == [
        (route, 403, 0),
        (route, 404, 0),
    ]


def test_embeddings_over_the_input_limit_is_400_before_forwarding(
    routes: tuple[Gateway, str], route_schemas: Path
) -> None:
    gateway, sim_url = routes
    key = gateway.new_key()
    before = sim_requests(sim_url)
    response = post(gateway, "embeddings", key, model="embed-short", input=["ok", LONG_TEXT])
    error = _error(response, route_schemas, 400)
    assert error["code"] == "context_length_exceeded" and error["param"] == "input"
    assert f"maximum context length is {SHORT_LIMIT} tokens" in error["message"]
    assert sim_requests(sim_url) == before
    [record] = gateway.records(key)
    assert (record.route, record.status, record.total_tokens) == ("embeddings", "rejected", 0)


def test_completions_over_the_context_is_400_before_forwarding(
    routes: tuple[Gateway, str], route_schemas: Path
) -> None:
    gateway, sim_url = routes
    key = gateway.new_key()
    before = sim_requests(sim_url)
    response = post(gateway, "completions", key, model="short", prompt=LONG_TEXT, max_tokens=2)
    error = _error(response, route_schemas, 400)
    assert error["code"] == "context_length_exceeded" and error["param"] == "prompt"
    assert sim_requests(sim_url) == before
    [record] = gateway.records(key)
    assert (record.route, record.http_status) == ("completions", 400)


@pytest.mark.parametrize(
    ("route", "body", "param"),
    [
        ("embeddings", {"model": "embed-qwen3", "input": ""}, "input"),
        ("embeddings", {"model": "embed-qwen3", "input": []}, "input"),
        ("embeddings", {"model": "embed-qwen3", "input": "x", "encoding_format": "hex"}, None),
        ("embeddings", {"model": "qwen3", "input": "x"}, "model"),
        ("completions", {"model": "qwen3", "prompt": ""}, "prompt"),
        ("completions", {"model": "qwen3", "prompt": [[]]}, "prompt"),
        ("completions", {"model": "embed-qwen3", "prompt": "x"}, "model"),
        ("completions", {"model": "qwen3"}, "prompt"),
    ],
)
def test_bad_bodies_are_400(
    routes: tuple[Gateway, str], route_schemas: Path, route: str, body: Any, param: str | None
) -> None:
    gateway, _ = routes
    key = gateway.new_key()
    error = _error(post(gateway, route, key, **body), route_schemas, 400)
    assert error["type"] == "invalid_request_error"
    if param is not None:
        assert error["param"] == param
    [record] = gateway.records(key)
    assert record.route == route and record.total_tokens == 0


def test_one_rpm_budget_across_chat_completions_and_embeddings(
    routes: tuple[Gateway, str], route_schemas: Path
) -> None:
    gateway, _ = routes
    key = gateway.new_key(rpm=2)
    chat = post(
        gateway,
        "chat/completions",
        key,
        model="qwen3",
        messages=[{"role": "user", "content": "hi"}],
        max_tokens=2,
    )
    assert chat.status_code == 200, chat.text
    embedded = post(gateway, "embeddings", key, **BODIES["embeddings"])
    assert embedded.status_code == 200, embedded.text
    assert embedded.headers["x-ratelimit-remaining-requests"] == "0"
    for route in ("completions", "embeddings"):
        refused = _error(post(gateway, route, key, **BODIES[route]), route_schemas, 429)
        assert refused["type"] == "rate_limit_error"
    records = gateway.records(key)
    assert [(r.route, r.status) for r in records] == [
        ("chat", "completed"),
        ("embeddings", "completed"),
        ("completions", "rate_limited"),
        ("embeddings", "rate_limited"),
    ]
    # The settled tokens of the embeddings request count against the key like chat's.
    assert records[1].total_tokens == records[1].prompt_tokens > 0
