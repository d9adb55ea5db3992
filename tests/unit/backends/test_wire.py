"""Upstream replies parsed as untrusted input."""

from __future__ import annotations

import pytest
from gateway.backends.wire import (
    MAX_USAGE_TOKENS,
    MalformedUpstream,
    cached_figure,
    parse_chunk,
    parse_completion,
    parse_embeddings,
    parse_text_chunk,
    parse_text_completion,
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


def test_parse_text_completion_accepts_vllms_text_choices() -> None:
    raw = (
        b'{"id":"cmpl-up","object":"text_completion","choices":[{"index":0,"text":"hi",'
        b'"logprobs":null,"finish_reason":"length","stop_reason":null},'
        b'{"index":1,"text":null,"finish_reason":null}],'
        b'"usage":{"prompt_tokens":3,"completion_tokens":1}}'
    )
    body = parse_text_completion(raw)
    assert [c["text"] for c in body["choices"]] == ["hi", None]
    assert body["usage"] == {"prompt_tokens": 3, "completion_tokens": 1}
    # a text choice carries no `message`: the chat parser would read it as empty, this
    # one does not look for one
    assert parse_text_completion(b'{"choices":[{"text":"x","message":7}]}')["choices"]


@pytest.mark.parametrize(
    "raw",
    [
        b"{}",
        b"[]",
        b'{"choices":{"text":"x"}}',
        b'{"choices":["x"]}',
        b'{"choices":[{"text":1}]}',
        b'{"choices":[{"text":["x"]}]}',
        b'{"choices":[{"index":128,"text":"x"}]}',
        b'{"choices":[{"text":"x","finish_reason":false}]}',
        b"{not json",
    ],
)
def test_parse_text_completion_refuses_malformed_bodies(raw: bytes) -> None:
    with pytest.raises(MalformedUpstream) as raised:
        parse_text_completion(raw)
    assert raised.value.status_code == 502 and "body" in raised.value.message


def test_parse_text_chunk_accepts_text_and_usage_chunks() -> None:
    chunk = parse_text_chunk(b'{"choices":[{"index":0,"text":" there","finish_reason":null}]}')
    assert chunk["choices"][0]["text"] == " there"
    usage = parse_text_chunk(b'{"usage":{"prompt_tokens":2,"completion_tokens":5}}')
    assert usage["choices"] == [] and usage["usage"]["completion_tokens"] == 5


@pytest.mark.parametrize(
    "payload",
    [
        b'"text"',
        b'{"choices":"x"}',
        b'{"choices":[{"text":3}]}',
        b'{"choices":[{"index":"0","text":"x"}]}',
        b'{"choices":[{"text":"x","finish_reason":["stop"]}]}',
        b"{not json",
    ],
)
def test_parse_text_chunk_refuses_malformed_events(payload: bytes) -> None:
    with pytest.raises(MalformedUpstream) as raised:
        parse_text_chunk(payload)
    assert "event" in raised.value.message


def test_parse_text_chunk_turns_an_error_event_into_an_upstream_error() -> None:
    with pytest.raises(UpstreamError) as raised:
        parse_text_chunk(b'{"error": {"message": "worker died at /srv/secret"}}')
    assert not isinstance(raised.value, MalformedUpstream)
    assert raised.value.code == "upstream_stream_error" and "secret" not in raised.value.message


def test_parse_embeddings_accepts_floats_ints_and_base64() -> None:
    raw = (
        b'{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.5,-1,2e-3]},'
        b'{"index":1,"embedding":"AACAPw=="}],"usage":{"prompt_tokens":4,"total_tokens":4}}'
    )
    body = parse_embeddings(raw)
    assert [item["embedding"] for item in body["data"]] == [[0.5, -1, 0.002], "AACAPw=="]
    assert parse_embeddings(b'{"data":[]}')["data"] == []


@pytest.mark.parametrize(
    "raw",
    [
        b"{}",
        b"[]",
        b'{"data":{"embedding":[1.0]}}',
        b'{"data":[1.0]}',
        b'{"data":[{"index":0}]}',
        b'{"data":[{"embedding":null}]}',
        b'{"data":[{"embedding":{"0":1.0}}]}',
        b'{"data":[{"embedding":[1.0,"2"]}]}',
        b'{"data":[{"embedding":[true]}]}',
        b'{"data":[{"embedding":[[1.0]]}]}',
        b'{"data":[{"index":"0","embedding":[1.0]}]}',
        b'{"data":[{"index":false,"embedding":[1.0]}]}',
        b"{not json",
    ],
)
def test_parse_embeddings_refuses_malformed_bodies(raw: bytes) -> None:
    with pytest.raises(MalformedUpstream) as raised:
        parse_embeddings(raw)
    assert raised.value.code == "upstream_malformed_response"


@pytest.mark.parametrize(
    ("usage", "cached"),
    [
        ({"prompt_tokens_details": {"cached_tokens": 32}}, 32),
        ({"prompt_tokens_details": {"cached_tokens": 0}}, 0),
        ({"prompt_tokens_details": None}, None),  # vLLM without the flag
        ({}, None),
        ({"prompt_tokens_details": {"cached_tokens": 101}}, None),  # more than the prompt
        ({"prompt_tokens_details": {"cached_tokens": -1}}, None),
        ({"prompt_tokens_details": {"cached_tokens": True}}, None),
        ({"prompt_tokens_details": {"cached_tokens": "32"}}, None),
        ("not a mapping", None),
    ],
)
def test_cached_figure_is_the_upstreams_sane_count(usage: object, cached: object) -> None:
    assert cached_figure(usage, prompt=100) == cached
