"""A client that goes away mid-stream: the upstream is cancelled at once and what was
generated until then is billed, status client_disconnected."""

from __future__ import annotations

import socket
import time

import httpx
import pytest

from tests.conftest import Gateway
from tests.support.sse import events, is_content


def sim_stats(sim_url: str) -> dict[str, int]:
    return dict(httpx.get(sim_url + "/sim/stats").json())


def test_disconnect_cancels_upstream_and_bills_partial_tokens(
    gateway: Gateway, sim_url: str
) -> None:
    key = gateway.new_key()
    before = sim_stats(sim_url)
    body = {
        "model": "qwen3",
        "messages": [{"role": "user", "content": "Tell me a long story."}],
        "stream": True,
        "max_tokens": 200,
        "sim": {"tpot_ms": 20},
    }
    received = 0
    with gateway.stream_chat(key, body) as response:
        for _, data in events(response):
            if is_content(data):
                received += 1
            if received == 5:
                break  # leaving the block closes the connection mid-stream

    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        records = gateway.records(key)
        stats = sim_stats(sim_url)
        if records and stats["cancelled"] > before["cancelled"]:
            break
        time.sleep(0.05)
    assert stats["cancelled"] == before["cancelled"] + 1, stats
    assert stats["active"] == 0
    [record] = gateway.records(key)
    assert record.status == "client_disconnected"
    assert record.http_status == 499 and record.stream
    # billed: the prompt plus what was generated before the upstream was cancelled
    assert record.prompt_tokens == record.gateway_prompt_tokens > 0
    assert 5 <= record.completion_tokens < 200
    assert record.completion_tokens == record.gateway_completion_tokens


@pytest.mark.parametrize("stream", [False, True])
def test_a_client_that_leaves_before_the_first_byte_is_noticed_at_once(
    gateway: Gateway, sim_url: str, stream: bool
) -> None:
    """Issue 27: a buffered or streamed request whose upstream takes 20 s to its first
    token, abandoned by its client after 0.5 s, is recorded as client_disconnected within
    a second and its generation cancelled (it used to run to the end, billed completed)."""
    key = gateway.new_key()
    before = sim_stats(sim_url)
    body = {
        "model": "qwen3",
        "messages": [{"role": "user", "content": "Tell me a long story."}],
        "stream": stream,
        "max_tokens": 50,
        "sim": {"ttft_ms": 20_000},
    }
    headers = {"Authorization": f"Bearer {key}"}
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(gateway.url + "/v1/chat/completions", json=body, headers=headers, timeout=0.5)
    left = time.monotonic()
    while time.monotonic() - left < 5:
        records = gateway.records(key)
        stats = sim_stats(sim_url)
        if records and stats["cancelled"] > before["cancelled"]:
            break
        time.sleep(0.05)
    noticed = time.monotonic() - left
    assert stats["cancelled"] == before["cancelled"] + 1, stats
    [record] = gateway.records(key)
    assert (record.status, record.http_status, record.stream) == (
        "client_disconnected",
        499,
        stream,
    )
    assert record.completion_tokens == 0 and record.prompt_tokens > 0  # forwarded: prompt billed
    assert noticed < 5 and record.latency_ms < 5_000  # not the 20 s the upstream would take


def test_a_client_that_leaves_mid_upload_is_recorded_as_gone_not_as_a_500(
    gateway: Gateway,
) -> None:
    """Issue 27: a body cut off mid-upload was an internal_error/500 with an ERROR
    traceback (Starlette's ClientDisconnect). It is the client's leaving: one record,
    client_disconnected, nothing billed (never forwarded, so no endpoint either)."""
    key = gateway.new_key()
    host, port = gateway.url.removeprefix("http://").split(":")
    head = (
        "POST /v1/chat/completions HTTP/1.1\r\n"
        f"Host: {host}\r\nAuthorization: Bearer {key}\r\n"
        "Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n"
    )
    with socket.create_connection((host, int(port)), timeout=5) as conn:
        conn.sendall(head.encode() + b'{"model": "qwen3", "messages": [')
        time.sleep(0.3)  # the gateway is reading the body when the client goes
    deadline = time.monotonic() + 5
    while not (records := gateway.records(key)) and time.monotonic() < deadline:
        time.sleep(0.05)
    [record] = records
    assert (record.status, record.http_status) == ("client_disconnected", 499)
    assert (record.prompt_tokens, record.completion_tokens) == (0, 0)
    assert record.endpoint == "-" and record.model == "-"
