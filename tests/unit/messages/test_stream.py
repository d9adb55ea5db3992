"""Streamed chat chunks as Anthropic's stream events: every event valid under
Anthropic's published types, and the anthropic SDK's stream reader rebuilds the message."""

from __future__ import annotations

from typing import Any

from gateway.errors import RateLimitError
from gateway.messages.protocol import MessagesRequest, parse_request
from gateway.messages.stream import Event, MessagesStream, sse_frame

from tests.conformance import validate_message_event

USAGE = {"prompt_tokens": 20, "completion_tokens": 11, "total_tokens": 31}
TOOL = {"name": "get_weather", "input_schema": {"type": "object"}}


def chunk(delta: dict[str, Any], finish_reason: str | None = None, **extra: Any) -> dict[str, Any]:
    return {"choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason, **extra}]}


def call(
    index: int, arguments: str, *, id: str | None = None, name: str | None = None
) -> dict[str, Any]:
    piece: dict[str, Any] = {"index": index, "function": {"arguments": arguments}}
    if id is not None:
        piece.update(id=id, type="function")
        piece["function"]["name"] = name
    return {"tool_calls": [piece]}


TEXT_THEN_CALL = [
    chunk({"role": "assistant", "content": ""}),
    chunk({"content": "Let me "}),
    chunk({"content": "check."}),
    chunk(call(0, '{"city":', id="call_a", name="get_weather")),
    chunk(call(0, '"Oslo"}')),
    chunk({}, "tool_calls"),
    {"choices": [], "usage": USAGE},
]


def request(**fields: Any) -> MessagesRequest:
    return parse_request(
        {
            "model": "qwen3",
            "max_tokens": 64,
            "messages": [{"role": "user", "content": "Hi"}],
            "stream": True,
            **fields,
        }
    )


def run(chunks: list[dict[str, Any]], req: MessagesRequest | None = None) -> list[Event]:
    stream = MessagesStream(
        message_id="msg_s1", model="qwen3", request=req or request(tools=[TOOL]), input_tokens=20
    )
    events = stream.start()
    for piece in chunks:
        events.extend(stream.feed(piece))
    events.extend(stream.finish(USAGE))
    for name, payload in events:
        validate_message_event(name, payload)
    return events


def test_text_then_a_tool_call() -> None:
    events = run(TEXT_THEN_CALL)
    assert [name for name, _ in events] == [
        "message_start",
        "ping",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert events[0][1]["message"]["usage"]["input_tokens"] == 20
    assert events[6][1] == {
        "type": "content_block_start",
        "index": 1,
        "content_block": {"type": "tool_use", "id": "call_a", "name": "get_weather", "input": {}},
    }
    assert events[7][1]["delta"] == {"type": "input_json_delta", "partial_json": '{"city":'}
    assert events[10][1]["delta"] == {"stop_reason": "tool_use", "stop_sequence": None}
    assert events[10][1]["usage"]["output_tokens"] == 11


def test_a_stop_sequence_is_named() -> None:
    events = run(
        [chunk({"content": "one two"}), chunk({}, "stop", stop_reason="END")],
        request(stop_sequences=["END"]),
    )
    assert events[-2][1]["delta"] == {"stop_reason": "stop_sequence", "stop_sequence": "END"}


def test_a_failure_is_one_error_event() -> None:
    stream = MessagesStream(message_id="msg_s2", model="qwen3", request=request(), input_tokens=3)
    [(name, payload)] = stream.fail(RateLimitError("Slow down."), request_id="req_9")
    assert name == "error"
    assert payload == {
        "type": "error",
        "error": {"type": "rate_limit_error", "message": "Slow down."},
        "request_id": "req_9",
    }
    validate_message_event(name, payload)


def test_the_anthropic_sdk_reads_the_stream() -> None:
    import httpx2  # the anthropic SDK's own HTTP client (a fork of httpx)
    from anthropic import Anthropic

    sse = b"".join(
        sse_frame(event) for event in run([chunk({"reasoning": "A tool."}), *TEXT_THEN_CALL])
    )

    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, content=sse, headers={"content-type": "text/event-stream"})

    client = Anthropic(
        api_key="k",
        base_url="http://gateway.test",
        http_client=httpx2.Client(transport=httpx2.MockTransport(handler)),
    )
    with client.messages.stream(
        model="qwen3", max_tokens=64, messages=[{"role": "user", "content": "Hi"}]
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "Let me check."
    assert final.stop_reason == "tool_use"
    thinking = final.content[0]
    assert thinking.type == "thinking"
    assert (thinking.thinking, thinking.signature) == ("A tool.", "msg_s1.0")
    tool = final.content[2]
    assert tool.type == "tool_use"
    assert (tool.id, tool.name, tool.input) == ("call_a", "get_weather", {"city": "Oslo"})
    assert final.usage.output_tokens == 11


def test_malformed_chunks_never_break_the_stream() -> None:
    hostile = [
        {},
        {"choices": None},
        {"choices": ["x"]},
        {"choices": [{"delta": "text"}]},
        {"choices": [{"delta": {"content": 7, "tool_calls": "x"}}]},
        {"choices": [{"delta": {"tool_calls": [None, {"index": "a", "function": "f"}]}}]},
        {"choices": [{"delta": {}, "finish_reason": ["odd"]}]},
    ]
    events = run([*hostile, chunk({"content": "fine"}, "stop")])
    assert events[-2][1]["delta"]["stop_reason"] in ("end_turn", "tool_use")


def test_reasoning_is_a_thinking_block_first() -> None:
    events = run(
        [
            chunk({"role": "assistant", "reasoning": "The user "}),
            chunk({"reasoning_content": "greets."}),  # vLLM's older field name
            chunk({"content": "Hello!"}, "stop"),
        ],
        request(),
    )
    assert [name for name, _ in events][2:7] == [
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
    ]
    assert events[2][1]["content_block"] == {"type": "thinking", "thinking": "", "signature": ""}
    assert events[3][1]["delta"] == {"type": "thinking_delta", "thinking": "The user "}
    assert events[5][1]["delta"] == {"type": "signature_delta", "signature": "msg_s1.0"}
    assert events[7][1]["index"] == 1 and events[7][1]["content_block"]["type"] == "text"
