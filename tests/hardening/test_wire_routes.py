"""The Responses and Messages routes against broken clients and upstreams:

- a client that leaves a stream: the upstream is cancelled, and the request has exactly
  one record, client_disconnected, billing what was generated (as for chat,
  tests/gateway/chat/test_disconnect.py);
- hostile upstream replies (tests/support/hostile.py): a malformed stream ends with the
  API's own failure event (`response.failed`, Anthropic's `error`), a malformed body is a
  502 in the API's error shape; never the upstream's words, always one record."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conformance import validate_anthropic_error, validate_response_event
from tests.conftest import Gateway, running_gateway
from tests.support.hostile import LEAK, HostileUpstream
from tests.support.servers import serve_asgi

SLOW_TPOT_MS = 20
LONG = 400  # tokens the slow model would generate: far more than a test waits for


@pytest.fixture(scope="module")
def slow_sim_url(tokenizers_dir: Path) -> Iterator[str]:
    from gpusim import SimConfig, create_app

    config = SimConfig(tokenizers_dir=tokenizers_dir, tpot_ms=SLOW_TPOT_MS, completion_tokens=LONG)
    with serve_asgi(create_app(config)) as url:
        yield url


@pytest.fixture(scope="module")
def slow(dynamodb: str, tokenizers_dir: Path, slow_sim_url: str) -> Iterator[Gateway]:
    with running_gateway(tokenizers_dir, slow_sim_url) as gateway:
        yield gateway


def stats(sim_url: str) -> dict[str, int]:
    return dict(httpx.get(sim_url + "/sim/stats").json())


BODIES: dict[str, tuple[str, dict[str, Any], str]] = {
    "responses": (
        "/v1/responses",
        {"model": "qwen3", "input": "Tell me a long story.", "stream": True},
        "response.output_text.delta",
    ),
    "messages": (
        "/v1/messages",
        {
            "model": "qwen3",
            "max_tokens": LONG,
            "messages": [{"role": "user", "content": "Tell me a long story."}],
            "stream": True,
        },
        "content_block_delta",
    ),
}


@pytest.mark.parametrize("route", sorted(BODIES))
def test_a_dropped_stream_is_one_client_disconnected_record(
    slow: Gateway, slow_sim_url: str, route: str
) -> None:
    path, body, delta = BODIES[route]
    key = slow.new_key()
    before = stats(slow_sim_url)
    deltas = 0
    with httpx.stream(
        "POST", slow.url + path, json=body, headers={"x-api-key": key}, timeout=30
    ) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if line == f"event: {delta}":
                deltas += 1
            if deltas == 5:
                break  # leaving the block closes the connection mid-stream

    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        records, now = slow.records(key), stats(slow_sim_url)
        if records and now["cancelled"] > before["cancelled"]:
            break
        time.sleep(0.05)
    assert now["cancelled"] == before["cancelled"] + 1, now
    [record] = slow.records(key)
    assert (record.route, record.status, record.http_status) == (route, "client_disconnected", 499)
    assert record.stream and record.prompt_tokens > 0
    assert 5 <= record.completion_tokens < LONG


@pytest.fixture(scope="module")
def hostile_gw(dynamodb: str, tokenizers_dir: Path) -> Iterator[Gateway]:
    url_app = HostileUpstream()
    with serve_asgi(url_app) as url:
        hostile = {"tokenizer": "qwen3", "upstream": {"type": "openai", "base_url": url}}
        native = {"native_routes": ["responses", "messages"]}  # its own APIs, not chat
        config = {
            "models": [
                {"id": "hostile", **hostile},
                {"id": "hostile-native", **hostile, **native},
            ]
        }
        with running_gateway(tokenizers_dir, url, models_config=json.dumps(config)) as gateway:
            yield gateway


def _hostile_body(
    route: str, scenario: str, *, stream: bool, model: str = "hostile"
) -> tuple[str, dict[str, Any]]:
    """The scenario travels in the field each API forwards as chat's `user`."""
    if route == "responses":
        return "/v1/responses", {
            "model": model,
            "input": "hi",
            "user": scenario,
            "stream": stream,
        }
    body = {
        "model": model,
        "max_tokens": 16,
        "messages": [{"role": "user", "content": "hi"}],
        "metadata": {"user_id": scenario},
        "stream": stream,
    }
    return "/v1/messages", body


def _frames(raw: bytes) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for block in raw.split(b"\n\n"):
        lines = dict(line.split(b": ", 1) for line in block.split(b"\n") if b": " in line)
        if b"event" in lines and b"data" in lines:
            out.append((lines[b"event"].decode(), json.loads(lines[b"data"])))
    return out


MODELS = ["hostile", "hostile-native"]  # translated to chat; forwarded in the API itself


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("route", ["responses", "messages"])
@pytest.mark.parametrize(
    "scenario",
    ["list_event", "string_choice", "string_delta", "int_content", "not_json", "usage_only"],
)
def test_a_malformed_stream_ends_with_the_apis_failure_event_and_one_record(
    hostile_gw: Gateway, route: str, scenario: str, model: str
) -> None:
    key = hostile_gw.new_key()
    path, body = _hostile_body(route, scenario, stream=True, model=model)
    response = httpx.post(hostile_gw.url + path, json=body, headers={"x-api-key": key}, timeout=60)
    if model == "hostile-native":
        # Chat chunks are not the API's events: the first one already fails the attempt
        # (read inside it, as routing reads every first chunk), so the client gets the
        # API's 502 before any event, and one record.
        assert response.status_code == 502
        assert LEAK.encode() not in response.content
        [record] = hostile_gw.records(key)
        assert (record.route, record.status, record.http_status) == (route, "upstream_error", 502)
        return
    assert response.status_code == 200
    assert LEAK.encode() not in response.content
    frames = _frames(response.content)
    name, payload = frames[-1]
    if route == "responses":
        assert [n for n, _ in frames[:2]] == ["response.created", "response.in_progress"]
        assert name == "response.failed"
        for each, data in frames:
            validate_response_event(each, data)
        assert [d["sequence_number"] for _, d in frames] == list(range(len(frames)))
    else:
        assert frames[0][0] == "message_start" and name == "error"
        validate_anthropic_error(payload)
    [record] = hostile_gw.records(key)
    assert (record.route, record.status) == (route, "upstream_error")


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("route", ["responses", "messages"])
@pytest.mark.parametrize("scenario", ["string_choice", "int_content", "leaky_error", "redirect"])
def test_a_malformed_body_is_a_502_in_the_apis_shape_with_one_record(
    hostile_gw: Gateway, route: str, scenario: str, model: str
) -> None:
    key = hostile_gw.new_key()
    path, body = _hostile_body(route, scenario, stream=False, model=model)
    response = httpx.post(hostile_gw.url + path, json=body, headers={"x-api-key": key}, timeout=60)
    assert response.status_code == 502
    assert LEAK.encode() not in response.content
    if route == "messages":
        validate_anthropic_error(response.json())
        assert response.json()["error"]["type"] == "api_error"
    else:
        assert set(response.json()["error"]) == {"message", "type", "param", "code"}
    [record] = hostile_gw.records(key)
    assert (record.route, record.status, record.http_status) == (route, "upstream_error", 502)
