"""A native Responses (and Messages) stream that fails once it started: the upstream's
error event, a stream ended before its last event, and the client leaving while the
upstream is silent. Each is one usage record, the client's stream ends in its API's
failure event (Responses: `response.failed`; Anthropic: `error`), and no upstream text
reaches the client."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import Gateway, running_gateway
from tests.support.native_faults import NativeFaults
from tests.support.servers import serve_asgi

MODEL = "faulty-native"


@pytest.fixture(scope="module")
def faults() -> NativeFaults:
    return NativeFaults()


@pytest.fixture(scope="module")
def gateway(dynamodb: str, tokenizers_dir: Path, faults: NativeFaults) -> Iterator[Gateway]:
    with serve_asgi(faults) as url:
        model = {
            "id": MODEL,
            "tokenizer": "qwen3",
            "upstream": {"type": "openai", "base_url": url, "model": "qwen3"},
            "native_routes": ["responses", "messages"],
        }
        config = json.dumps({"models": [model]})
        with running_gateway(tokenizers_dir, url, models_config=config) as running:
            yield running


ROUTES: dict[str, tuple[str, dict[str, Any]]] = {
    "responses": ("/v1/responses", {"model": MODEL, "input": "Hi!", "stream": True}),
    "messages": (
        "/v1/messages",
        {
            "model": MODEL,
            "max_tokens": 32,
            "stream": True,
            "messages": [{"role": "user", "content": "Hi!"}],
        },
    ),
}


def stream(gateway: Gateway, key: str, route: str) -> list[tuple[str, dict[str, Any]]]:
    path, body = ROUTES[route]
    headers = {"Authorization": f"Bearer {key}"}
    events: list[tuple[str, dict[str, Any]]] = []
    with httpx.stream("POST", gateway.url + path, json=body, headers=headers, timeout=30) as r:
        assert r.status_code == 200
        name = ""
        for line in r.iter_lines():
            if line.startswith("event: "):
                name = line.removeprefix("event: ")
            elif line.startswith("data: "):
                events.append((name, json.loads(line.removeprefix("data: "))))
    return events


def record_when_written(gateway: Gateway, key: str) -> Any:
    """The request's one record, once the gateway has written it (it writes it as the
    stream ends, which the client may see first)."""
    deadline = time.monotonic() + 20
    while not (records := gateway.records(key)) and time.monotonic() < deadline:
        time.sleep(0.05)
    [record] = records
    return record


@pytest.mark.parametrize("route", ["responses", "messages"])
@pytest.mark.parametrize("mode", ["failed", "cut"])
def test_a_stream_the_upstream_fails_or_cuts_ends_in_the_failure_event(
    gateway: Gateway, faults: NativeFaults, route: str, mode: str
) -> None:
    faults.mode = mode
    key = gateway.new_key()
    events = stream(gateway, key, route)
    name, last = events[-1]
    if route == "responses":
        assert name == "response.failed" and last["response"]["status"] == "failed"
        assert [e["sequence_number"] for _, e in events] == list(range(len(events)))
        deltas = [e["delta"] for n, e in events if n == "response.output_text.delta"]
    else:
        assert name == "error" and last["type"] == "error"
        deltas = [e["delta"]["text"] for n, e in events if n == "content_block_delta"]
    assert deltas == ["Hello there"]
    assert "secret" not in json.dumps(events)
    record = record_when_written(gateway, key)
    assert (record.route, record.status, record.http_status) == (route, "upstream_error", 502)
    assert record.prompt_tokens > 0 and record.completion_tokens == 2  # what was generated
    assert faults.paths[-1] == ROUTES[route][0]


@pytest.mark.parametrize("route", ["responses", "messages"])
def test_a_client_gone_mid_stream_is_one_record_and_closes_the_upstream(
    gateway: Gateway, faults: NativeFaults, route: str
) -> None:
    faults.mode = "hang"
    faults.closed.clear()
    key = gateway.new_key()
    path, body = ROUTES[route]
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.stream("POST", gateway.url + path, json=body, headers=headers, timeout=30) as r:
        for line in r.iter_lines():
            if "Hello there" in line:
                break  # the client leaves after the first text
    assert faults.closed.wait(20)  # the gateway closed its upstream request
    record = record_when_written(gateway, key)
    assert (record.route, record.status, record.http_status) == (
        route,
        "client_disconnected",
        499,
    )
    assert record.completion_tokens == 2
