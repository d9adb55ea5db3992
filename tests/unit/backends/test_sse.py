"""The one SSE decoder: events from bytes cut anywhere."""

from __future__ import annotations

import pytest
from gateway.backends.sse import SSEDecoder, until_done
from gateway.errors import UpstreamError

WIRE = (
    b": keep-alive comment\r\n"
    b'data: {"a": 1}\r\n\r\n'
    b"event: message\n"
    b'data: {"b":\n'
    b"data: 2}\n\n"
    b'{"jsonl": true}\n'
    b"data: [DONE]\n\n"
)
EXPECTED = [b'{"a": 1}', b'{"b":\n2}', b'{"jsonl": true}', b"[DONE]"]


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64, len(WIRE)])
def test_feed_yields_the_same_events_however_the_bytes_are_cut(size: int) -> None:
    decoder = SSEDecoder()
    events: list[bytes] = []
    for start in range(0, len(WIRE), size):
        events += decoder.feed(WIRE[start : start + size])
    events += decoder.close()
    assert events == EXPECTED


def test_close_flushes_an_event_without_its_blank_line() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: tail") == []
    assert decoder.close() == [b"tail"]
    assert decoder.close() == []


def test_data_without_space_and_multibyte_text_split_mid_character() -> None:
    decoder = SSEDecoder()
    text = "data:héllo\n\n".encode()
    events = decoder.feed(text[:6]) + decoder.feed(text[6:])
    assert events == ["héllo".encode()]


def test_an_event_over_the_size_limit_is_an_upstream_error() -> None:
    decoder = SSEDecoder(max_event_bytes=100)
    decoder.feed(b"data: " + b"x" * 60 + b"\n")
    with pytest.raises(UpstreamError):
        decoder.feed(b"data: " + b"y" * 60 + b"\n")


def test_a_line_without_newline_over_the_limit_is_refused() -> None:
    decoder = SSEDecoder(max_event_bytes=100)
    with pytest.raises(UpstreamError):
        decoder.feed(b"data: " + b"z" * 200)


@pytest.mark.parametrize(
    ("events", "before", "done"),
    [
        ([b'{"a":1}', b'{"b":2}', b"[DONE]", b'{"late":3}'], [b'{"a":1}', b'{"b":2}'], True),
        ([b"[DONE]"], [], True),
        ([b'{"a":1}', b" [DONE]\r"], [b'{"a":1}'], True),  # padded: still the end
        ([b'{"a":1}', b'{"b":2}'], [b'{"a":1}', b'{"b":2}'], False),
        ([], [], False),
        ([b'{"text":"[DONE]"}'], [b'{"text":"[DONE]"}'], False),  # only a whole event ends it
    ],
)
def test_until_done_keeps_the_events_before_done_and_says_if_it_came(
    events: list[bytes], before: list[bytes], done: bool
) -> None:
    assert until_done(events) == (before, done)
