"""Replies of upstreams that serve the Responses and Messages APIs themselves, parsed as
untrusted input and read as chat (backends/native.py, wire_responses.py, wire_messages.py).
The events are vLLM's, as gpusim sends them."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from gateway.backends.native import Ended
from gateway.backends.wire import MalformedUpstream, log_upstream_text
from gateway.backends.wire_messages import MESSAGES, parse_message, parse_message_event
from gateway.backends.wire_responses import RESPONSES, parse_response, parse_response_event
from gateway.errors import UpstreamError


def event(**fields: Any) -> bytes:
    return orjson.dumps(fields)


RESPONSE_USAGE = {
    "input_tokens": 12,
    "input_tokens_details": {"cached_tokens": 4},
    "output_tokens": 3,
    "total_tokens": 15,
}


def test_the_routes_name_their_paths() -> None:
    assert (RESPONSES.name, RESPONSES.path) == ("responses", "/responses")
    assert (MESSAGES.name, MESSAGES.path) == ("messages", "/messages")


def test_a_buffered_response_reads_as_a_chat_completion() -> None:
    body = {
        "id": "resp_1",
        "object": "response",
        "status": "completed",
        "output": [
            {"type": "reasoning", "content": [{"type": "reasoning_text", "text": "Hm."}]},
            {"type": "message", "content": [{"type": "output_text", "text": "Hi"}]},
            {"type": "function_call", "call_id": "call_1", "name": "f", "arguments": "{}"},
        ],
        "usage": RESPONSE_USAGE,
    }
    completion = parse_response(orjson.dumps(body))
    [choice] = completion["choices"]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"] == {
        "role": "assistant",
        "content": "Hi",
        "reasoning_content": "Hm.",
        "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
        ],
    }
    assert completion["usage"] == {
        "prompt_tokens": 12,
        "completion_tokens": 3,
        "total_tokens": 15,
        "prompt_tokens_details": {"cached_tokens": 4},
    }


def test_an_incomplete_response_finishes_with_length() -> None:
    body = {
        "object": "response",
        "status": "incomplete",
        "incomplete_details": {"reason": "max_output_tokens"},
        "output": [],
    }
    assert parse_response(orjson.dumps(body))["choices"][0]["finish_reason"] == "length"


@pytest.mark.parametrize(
    "body",
    [
        b"[]",
        b"{not json",
        event(object="chat.completion", choices=[]),
        event(object="response", output="x"),
        event(object="response", output=["x"]),
        event(object="response", output=[{"type": "message", "content": "x"}]),
        event(
            object="response",
            output=[{"type": "message", "content": [{"type": "output_text", "text": 1}]}],
        ),
        event(object="response", output=[{"type": "function_call", "name": "f"}]),
    ],
)
def test_a_malformed_response_is_refused(body: bytes) -> None:
    with pytest.raises(MalformedUpstream):
        parse_response(body)


def test_a_failed_response_is_an_upstream_error() -> None:
    with pytest.raises(UpstreamError):
        parse_response(event(object="response", status="failed", output=[], error={"x": 1}))


def test_response_events_read_as_chat_chunks() -> None:
    assert parse_response_event(event(type="response.created", response={}))["choices"] == []
    text = parse_response_event(event(type="response.output_text.delta", delta="He"))
    assert text["choices"][0]["delta"] == {"content": "He"}
    thought = parse_response_event(event(type="response.reasoning_text.delta", delta="So"))
    assert thought["choices"][0]["delta"] == {"reasoning_content": "So"}
    item = {"type": "function_call", "call_id": "call_9", "name": "f", "arguments": ""}
    added = parse_response_event(
        event(type="response.output_item.added", output_index=1, item=item)
    )
    assert added["choices"][0]["delta"]["tool_calls"] == [
        {"index": 1, "id": "call_9", "type": "function", "function": {"name": "f", "arguments": ""}}
    ]
    message = {"type": "message", "content": []}
    opened = event(type="response.output_item.added", output_index=0, item=message)
    assert parse_response_event(opened)["choices"] == []
    piece = event(type="response.function_call_arguments.delta", output_index=1, delta='{"a"')
    assert parse_response_event(piece)["choices"][0]["delta"]["tool_calls"] == [
        {"index": 1, "function": {"arguments": '{"a"'}}
    ]
    done = event(
        type="response.completed",
        response={"status": "completed", "output": [], "usage": RESPONSE_USAGE},
    )
    last = parse_response_event(done)
    assert last["choices"][0]["finish_reason"] == "stop"
    assert last["usage"]["prompt_tokens"] == 12


@pytest.mark.parametrize(
    "payload",
    [
        event(type="error", error={"message": "/srv/secret"}),
        event(type="response.failed", response={"status": "failed"}),
        event(type="response.completed", response={"status": "failed", "output": []}),
    ],
)
def test_response_error_events_are_upstream_errors(payload: bytes) -> None:
    with pytest.raises(UpstreamError) as raised:
        parse_response_event(payload)
    assert "secret" not in raised.value.message


@pytest.mark.parametrize(
    "payload",
    [
        b"3",
        event(delta="x"),
        event(type="response.output_text.delta", delta=3),
        event(type="response.function_call_arguments.delta", output_index=-1, delta=""),
        event(type="response.function_call_arguments.delta", output_index=True, delta=""),
        event(type="response.output_item.added", output_index=0, item={"type": "function_call"}),
        event(type="response.completed", response="x"),
    ],
)
def test_malformed_response_events_are_refused(payload: bytes) -> None:
    with pytest.raises(MalformedUpstream):
        parse_response_event(payload)


def test_a_buffered_message_reads_as_a_chat_completion() -> None:
    body = {
        "id": "chatcmpl-1",
        "type": "message",
        "content": [
            {"type": "thinking", "thinking": "Hm."},
            {"type": "text", "text": "Hi"},
            {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {"a": 1}},
        ],
        "stop_reason": "tool_use",
        "usage": {"input_tokens": 8, "output_tokens": 3, "cache_read_input_tokens": 4},
    }
    completion = parse_message(orjson.dumps(body))
    [choice] = completion["choices"]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] == "Hi"
    assert choice["message"]["reasoning_content"] == "Hm."
    assert choice["message"]["tool_calls"][0]["function"] == {"name": "f", "arguments": '{"a":1}'}
    # vLLM's input_tokens leaves out the cached ones: chat's prompt_tokens holds both.
    assert completion["usage"]["prompt_tokens"] == 12
    assert completion["usage"]["prompt_tokens_details"] == {"cached_tokens": 4}


def test_a_matched_stop_sequence_is_vllms_stop_reason() -> None:
    body = {
        "type": "message",
        "content": [],
        "stop_reason": "stop_sequence",
        "stop_sequence": "END",
        "usage": {"input_tokens": 1, "output_tokens": 1},
    }
    [choice] = parse_message(orjson.dumps(body))["choices"]
    assert (choice["finish_reason"], choice["stop_reason"]) == ("stop", "END")


@pytest.mark.parametrize(
    "body",
    [
        b"[]",
        event(type="message", content="x"),
        event(type="message", content=["x"]),
        event(type="message", content=[{"type": "text", "text": None}]),
        event(type="message", content=[{"type": "tool_use", "id": "t", "name": "f", "input": 1}]),
        event(type="message", content=[], stop_reason="bored"),
        event(type="completion", content=[]),
    ],
)
def test_a_malformed_message_is_refused(body: bytes) -> None:
    with pytest.raises(MalformedUpstream):
        parse_message(body)


def test_an_error_body_is_an_upstream_error() -> None:
    with pytest.raises(UpstreamError):
        parse_message(event(type="error", error={"type": "api_error", "message": "x"}))


def test_message_events_read_as_chat_chunks() -> None:
    assert parse_message_event(event(type="message_start", message={}))["choices"] == []
    assert parse_message_event(event(type="ping"))["choices"] == []
    tool = {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}
    started = parse_message_event(event(type="content_block_start", index=1, content_block=tool))
    assert started["choices"][0]["delta"]["tool_calls"][0]["id"] == "toolu_1"
    text_block = event(
        type="content_block_start", index=0, content_block={"type": "text", "text": ""}
    )
    assert parse_message_event(text_block)["choices"] == []
    delta = {"type": "input_json_delta", "partial_json": '{"a'}
    piece = parse_message_event(event(type="content_block_delta", index=1, delta=delta))
    assert piece["choices"][0]["delta"]["tool_calls"] == [
        {"index": 1, "function": {"arguments": '{"a'}}
    ]
    text = {"type": "text_delta", "text": "Hi"}
    assert parse_message_event(event(type="content_block_delta", index=0, delta=text))["choices"][
        0
    ]["delta"] == {"content": "Hi"}
    end = event(
        type="message_delta",
        delta={"stop_reason": "max_tokens"},
        usage={"input_tokens": 5, "output_tokens": 2},
    )
    last = parse_message_event(end)
    assert last["choices"][0]["finish_reason"] == "length"
    assert (last["usage"]["prompt_tokens"], last["usage"]["completion_tokens"]) == (5, 2)
    # Anthropic's own message_delta reports only output_tokens: no figures, the gateway counts.
    only_output = event(
        type="message_delta", delta={"stop_reason": "end_turn"}, usage={"output_tokens": 2}
    )
    assert "usage" not in parse_message_event(only_output)


def test_an_error_event_is_an_upstream_error() -> None:
    with pytest.raises(UpstreamError):
        parse_message_event(event(type="error", error={"type": "internal_error", "message": "x"}))


@pytest.mark.parametrize(
    "payload",
    [
        b"null",
        event(index=0),
        event(type="content_block_start", index=0, content_block="x"),
        event(type="content_block_start", index=-2, content_block={"type": "text"}),
        event(type="content_block_delta", index=0, delta={"type": "text_delta", "text": 1}),
        event(type="content_block_delta", index=0, delta=[]),
        event(type="content_block_start", index=0, content_block={"type": "tool_use"}),
        event(type="message_delta", delta={"stop_reason": 7}),
        event(type="message_delta", delta=None),
    ],
)
def test_malformed_message_events_are_refused(payload: bytes) -> None:
    with pytest.raises(MalformedUpstream):
        parse_message_event(payload)


async def _chunks(*chunks: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
    for chunk in chunks:
        yield chunk


TEXT = {"choices": [{"index": 0, "delta": {"content": "Hi"}, "finish_reason": None}]}
LAST = {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}


@pytest.mark.anyio
async def test_ended_passes_a_finished_stream() -> None:
    assert [c async for c in Ended(_chunks(TEXT, LAST, {"choices": []}))] == [
        TEXT,
        LAST,
        {"choices": []},
    ]


@pytest.mark.anyio
async def test_ended_makes_a_cut_stream_an_upstream_error() -> None:
    seen: list[dict[str, Any]] = []
    stream = Ended(_chunks(TEXT))
    with pytest.raises(UpstreamError) as raised:
        async for chunk in stream:
            seen.append(chunk)
    assert seen == [TEXT] and raised.value.code == "upstream_stream_cut"
    await stream.aclose()


def test_upstream_text_is_logged_at_debug_only(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="gateway.backends.wire"):
        log_upstream_text(500, "x" * 600)
    [logged] = caplog.records
    assert logged.levelno == logging.DEBUG and len(logged.text) == 500  # type: ignore[attr-defined]
