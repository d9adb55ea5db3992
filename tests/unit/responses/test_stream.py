"""Streamed chat chunks as the Responses API's events: OpenAI's order, increasing
sequence numbers, every event valid under OpenAI's published schema, and the openai
SDK's own stream reader rebuilds the response from them."""

from __future__ import annotations

from typing import Any

import httpx
from gateway.errors import UpstreamError
from gateway.responses.protocol import ResponsesRequest, parse_request
from gateway.responses.stream import Event, ResponsesStream, sse_frame

from tests.conformance import validate_response_event

USAGE = {"prompt_tokens": 12, "completion_tokens": 9, "total_tokens": 21}
TOOL = {"type": "function", "name": "get_weather", "parameters": {"type": "object"}}


def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-up",
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
    }


def call(
    index: int, *, arguments: str, id: str | None = None, name: str | None = None
) -> dict[str, Any]:
    piece: dict[str, Any] = {"index": index, "function": {"arguments": arguments}}
    if id is not None:
        piece.update(id=id, type="function")
        piece["function"]["name"] = name
    return {"tool_calls": [piece]}


TEXT_THEN_CALLS = [
    chunk({"role": "assistant", "content": ""}),
    chunk({"content": "Let me "}),
    chunk({"content": "check."}),
    chunk(call(0, id="call_a", name="get_weather", arguments='{"city":')),
    chunk(call(0, arguments='"Oslo"}')),
    chunk(call(1, id="call_b", name="get_weather", arguments='{"city":"Rome"}')),
    chunk({}, "tool_calls"),
    {"id": "chatcmpl-up", "choices": [], "usage": USAGE},  # the upstream's usage chunk
]


def run(
    chunks: list[dict[str, Any]], req: ResponsesRequest | None = None, usage: Any = USAGE
) -> tuple[ResponsesStream, list[Event]]:
    stream = ResponsesStream(
        response_id="resp_s1",
        created=1765000000,
        model="qwen3",
        request=req
        or parse_request({"model": "qwen3", "input": "Hi", "tools": [TOOL], "stream": True}),
    )
    events = stream.start()
    for piece in chunks:
        events.extend(stream.feed(piece))
    events.extend(stream.finish(usage))
    return stream, events


def check(events: list[Event]) -> None:
    for name, payload in events:
        validate_response_event(name, payload)
    assert [payload["sequence_number"] for _, payload in events] == list(range(len(events)))


def test_text_then_two_calls_in_openais_order() -> None:
    stream, events = run(TEXT_THEN_CALLS)
    check(events)
    assert [name for name, _ in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    created = events[0][1]["response"]
    assert created["status"] == "in_progress"
    assert created["output"] == []
    assert events[6][1]["text"] == "Let me check."
    assert events[12][1] == {
        "type": "response.function_call_arguments.done",
        "sequence_number": 12,
        "item_id": "fc_s1_1",
        "output_index": 1,
        "name": "get_weather",
        "arguments": '{"city":"Oslo"}',
    }
    final = events[-1][1]["response"]
    assert final["status"] == "completed"
    assert [item["type"] for item in final["output"]] == [
        "message",
        "function_call",
        "function_call",
    ]
    assert [item.get("call_id") for item in final["output"]] == [None, "call_a", "call_b"]
    assert final["usage"]["input_tokens"] == 12
    assert final["usage"]["total_tokens"] == 21
    assert stream.output == final["output"]


def test_length_ends_incomplete() -> None:
    _, events = run([chunk({"content": "Once"}), chunk({"content": " upon"}, "length")])
    check(events)
    name, payload = events[-1]
    assert name == "response.incomplete"
    assert payload["response"]["incomplete_details"] == {"reason": "max_output_tokens"}
    assert payload["response"]["output"][0]["status"] == "incomplete"


def test_a_failure_after_the_start_is_response_failed() -> None:
    stream = ResponsesStream(
        response_id="resp_s2",
        created=1,
        model="qwen3",
        request=parse_request({"model": "m", "input": "x"}),
    )
    events = [*stream.start(), *stream.feed(chunk({"content": "par"}))]
    events += stream.fail(UpstreamError("The model endpoint failed."))
    check(events)
    name, payload = events[-1]
    assert name == "response.failed"
    assert payload["response"]["status"] == "failed"
    assert payload["response"]["error"] == {
        "code": "server_error",
        "message": "The model endpoint failed.",
    }


def test_the_openai_sdk_reads_the_stream() -> None:
    """The SSE bytes as the gateway would send them, read by the openai SDK's
    responses.stream() (httpx's MockTransport stands in for the network)."""
    from openai import OpenAI

    _, events = run([chunk({"reasoning": "Weather, so a tool."}), *TEXT_THEN_CALLS])
    sse = b"".join(sse_frame(event) for event in events)

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=sse, headers={"content-type": "text/event-stream"})

    client = OpenAI(
        api_key="k",
        base_url="http://gateway.test/v1",
        http_client=httpx.Client(transport=httpx.MockTransport(handler)),
    )
    with client.responses.stream(model="qwen3", input="Hi") as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(deltas) == "Let me check."
    assert final.output_text == "Let me check."
    reasoning = final.output[0]
    assert reasoning.type == "reasoning"
    assert reasoning.content is not None and reasoning.content[0].text == "Weather, so a tool."
    calls = [item for item in final.output if item.type == "function_call"]
    assert [(c.call_id, c.arguments) for c in calls] == [
        ("call_a", '{"city":"Oslo"}'),
        ("call_b", '{"city":"Rome"}'),
    ]
    assert final.usage is not None and final.usage.total_tokens == 21


HOSTILE = [
    {},
    {"choices": None},
    {"choices": ["x"]},
    {"choices": [{"delta": "text"}]},
    {"choices": [{"delta": {"content": 7, "tool_calls": "x"}}]},
    {"choices": [{"delta": {"tool_calls": [None, {"index": "a", "function": "f"}]}}]},
    {"choices": [{"delta": {}, "finish_reason": ["odd"]}]},
]


def test_malformed_chunks_never_break_the_stream() -> None:
    _, events = run([*HOSTILE, chunk({"content": "fine"}, "stop")])
    check(events)
    assert events[-1][1]["response"]["output"][-1]["content"][0]["text"] == "fine"


def test_reasoning_streams_first_as_vllm_sends_it() -> None:
    _, events = run(
        [
            chunk({"role": "assistant", "reasoning": "The user "}),
            chunk({"reasoning_content": "greets."}),  # vLLM's older field name
            chunk({"content": "Hello!"}, "stop"),
        ]
    )
    check(events)
    assert [name for name, _ in events][2:9] == [
        "response.output_item.added",
        "response.content_part.added",
        "response.reasoning_text.delta",
        "response.reasoning_text.delta",
        "response.reasoning_text.done",
        "response.content_part.done",
        "response.output_item.done",
    ]
    final = events[-1][1]["response"]
    assert final["output"][0] == {
        "id": "rs_s1_0",
        "type": "reasoning",
        "summary": [],
        "content": [{"type": "reasoning_text", "text": "The user greets."}],
        "status": "completed",
    }
    assert final["output"][1]["id"] == "msg_s1_1"
