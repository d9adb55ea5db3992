"""Upstream replies parsed as untrusted input."""

from __future__ import annotations

import pytest
from gateway.backends.wire import (
    MAX_USAGE_TOKENS,
    MalformedUpstream,
    parse_chunk,
    parse_completion,
    status_error,
    usage_figures,
)
from gateway.errors import InvalidRequestError, UpstreamError


def test_parse_chunk_accepts_openai_and_vllm_shapes() -> None:
    chunk = parse_chunk(
        b'{"choices":[{"index":0,"delta":{"content":"hi","tool_calls":[{"index":0}]},'
        b'"finish_reason":null,"stop_reason":null}]}'
    )
    assert chunk["choices"][0]["delta"]["content"] == "hi"
    assert parse_chunk(b'{"usage":{"prompt_tokens":1,"completion_tokens":2}}')["choices"] == []


@pytest.mark.parametrize(
    "payload",
    [
        b"[1,2,3]",
        b'{"choices":["x"]}',
        b'{"choices":"x"}',
        b'{"choices":[{"delta":"oops"}]}',
        b'{"choices":[{"index":[0],"delta":{}}]}',
        b'{"choices":[{"index":-1,"delta":{}}]}',
        b'{"choices":[{"index":true,"delta":{}}]}',
        b'{"choices":[{"delta":{"content":123}}]}',
        b'{"choices":[{"delta":{"tool_calls":"x"}}]}',
        b'{"choices":[{"delta":{},"finish_reason":1}]}',
        b"{not json",
    ],
)
def test_parse_chunk_refuses_malformed_events(payload: bytes) -> None:
    with pytest.raises(MalformedUpstream):
        parse_chunk(payload)


def test_an_error_event_is_an_upstream_error_without_its_text() -> None:
    with pytest.raises(UpstreamError) as raised:
        parse_chunk(b'{"error": {"message": "CUDA OOM at /srv/secret"}}')
    assert "secret" not in raised.value.message
    assert raised.value.code == "upstream_stream_error"


def test_parse_completion_checks_choices_and_messages() -> None:
    body = parse_completion(b'{"choices":[{"index":0,"message":{"content":"x"}}]}')
    assert body["choices"][0]["message"]["content"] == "x"
    for bad in (b'{"choices":["x"]}', b'{"choices":[{"message":{"content":1}}]}', b"{}", b"[]"):
        with pytest.raises(MalformedUpstream):
            parse_completion(bad)


@pytest.mark.parametrize(
    ("usage", "figures"),
    [
        ({"prompt_tokens": 3, "completion_tokens": 4}, (3, 4)),
        ({"prompt_tokens": -1, "completion_tokens": 4}, None),
        ({"prompt_tokens": True, "completion_tokens": 4}, None),
        ({"prompt_tokens": 3.0, "completion_tokens": 4}, None),
        ({"prompt_tokens": MAX_USAGE_TOKENS + 1, "completion_tokens": 4}, None),
        ({"prompt_tokens": 3}, None),
        ("x", None),
        (None, None),
    ],
)
def test_usage_figures_are_sane_non_negative_integers(usage: object, figures: object) -> None:
    assert usage_figures(usage) == figures


def test_status_error_maps_statuses_without_the_upstreams_words() -> None:
    raw = b'{"error": {"message": "internal /srv/path"}}'
    rejected = status_error(400, raw)
    assert isinstance(rejected, InvalidRequestError) and rejected.status_code == 400
    failed = status_error(500, raw)
    assert (failed.status_code, failed.code) == (502, "upstream_http_500")
    busy = status_error(429, raw, {"Retry-After": "7"})
    assert (busy.status_code, busy.headers) == (429, {"Retry-After": "7"})
    assert status_error(503, raw, {"Retry-After": "3"}).status_code == 503
    assert status_error(503, raw, {}).status_code == 502
    for error in (rejected, failed, busy):
        assert "/srv/path" not in error.message
