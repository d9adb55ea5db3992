"""Responses requests as chat bodies, and chat completions as `response` objects valid
under OpenAI's published schema."""

from __future__ import annotations

from typing import Any

from gateway.chat.protocol import ChatCompletionRequest
from gateway.inputs import validate
from gateway.responses.answer import response_from_chat
from gateway.responses.protocol import ResponsesRequest, parse_request
from gateway.responses.translate import deleted, input_items, native_body, to_chat

from tests.conformance import validate_chat_request, validate_response

USAGE = {
    "prompt_tokens": 30,
    "completion_tokens": 7,
    "total_tokens": 37,
    "prompt_tokens_details": {"cached_tokens": 16},
}
TOOL = {
    "type": "function",
    "name": "get_weather",
    "description": "Weather of a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
}


def request(**fields: Any) -> ResponsesRequest:
    return parse_request({"model": "qwen3", "input": "Hello", **fields})


def chat_body(req: ResponsesRequest, history: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    body = to_chat(req, history or [])
    validate_chat_request(body)  # OpenAI's published schema
    validate(ChatCompletionRequest, body)  # and the gateway's own chat route takes it
    return body


def completion(message: dict[str, Any], finish_reason: str = "stop") -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason}],
    }


def answer(req: ResponsesRequest, message: dict[str, Any], finish: str = "stop") -> dict[str, Any]:
    body = response_from_chat(
        completion(message, finish),
        response_id="resp_r1",
        created=1765000000,
        model="qwen3",
        request=req,
        usage=USAGE,
    )
    validate_response(body)
    return body


def test_string_input_with_instructions_and_fields() -> None:
    req = request(
        instructions="Be brief.",
        max_output_tokens=64,
        temperature=0.2,
        top_p=0.9,
        top_k=20,
        user="u1",
        metadata={"k": "v"},
        stream=True,
    )
    assert chat_body(req) == {
        "model": "qwen3",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hello"},
        ],
        "max_tokens": 64,
        "temperature": 0.2,
        "top_p": 0.9,
        "top_k": 20,
        "user": "u1",
        "stream": True,
        "stream_options": {"include_usage": True},
    }


def test_items_become_the_chat_conversation() -> None:
    req = request(
        input=[
            {"role": "developer", "content": [{"type": "input_text", "text": "Use tools."}]},
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "Weather here?"},
                    {
                        "type": "input_image",
                        "image_url": "data:image/png;base64,AA==",
                        "detail": "low",
                    },
                ],
            },
            {"type": "reasoning", "id": "rs_1", "summary": []},
            {
                "type": "message",
                "role": "assistant",
                "content": [{"type": "output_text", "text": "Checking.", "annotations": []}],
            },
            {
                "type": "function_call",
                "call_id": "c1",
                "name": "get_weather",
                "arguments": '{"city":"Oslo"}',
            },
            {
                "type": "function_call",
                "call_id": "c2",
                "name": "get_weather",
                "arguments": '{"city":"Rome"}',
            },
            {"type": "function_call_output", "call_id": "c1", "output": "cold"},
            {
                "type": "function_call_output",
                "call_id": "c2",
                "output": [{"type": "input_text", "text": "warm"}],
            },
        ],
        tools=[TOOL],
        tool_choice={"type": "function", "name": "get_weather"},
        parallel_tool_calls=False,
    )
    body = chat_body(req)
    call = {"type": "function", "function": {"name": "get_weather"}}
    assert body["messages"] == [
        {"role": "system", "content": [{"type": "text", "text": "Use tools."}]},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Weather here?"},
                {
                    "type": "image_url",
                    "image_url": {"url": "data:image/png;base64,AA==", "detail": "low"},
                },
            ],
        },
        {
            "role": "assistant",
            "content": "Checking.",
            "tool_calls": [
                {
                    "id": "c1",
                    **call,
                    "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'},
                },
                {
                    "id": "c2",
                    **call,
                    "function": {"name": "get_weather", "arguments": '{"city":"Rome"}'},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "cold"},
        {"role": "tool", "tool_call_id": "c2", "content": "warm"},
    ]
    assert body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather of a city",
                "parameters": TOOL["parameters"],
            },
        }
    ]
    assert body["tool_choice"] == call
    assert body["parallel_tool_calls"] is False


def test_a_call_with_no_assistant_text_opens_an_assistant_message() -> None:
    req = request(
        input=[
            {"role": "user", "content": "Weather?"},
            {"type": "function_call", "call_id": "c1", "name": "get_weather", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c1", "output": "cold"},
        ],
        tools=[TOOL],
    )
    messages = chat_body(req)["messages"]
    assert messages[1]["role"] == "assistant"
    assert messages[1]["content"] is None
    assert [c["id"] for c in messages[1]["tool_calls"]] == ["c1"]


def test_history_comes_first_and_instructions_are_not_carried_over() -> None:
    first = request(instructions="Old rules.", input="My name is Ada.")
    reply = answer(first, {"role": "assistant", "content": "Hi Ada."})
    history = [*input_items(first), *reply["output"]]
    second = request(input="What is my name?", previous_response_id="resp_r1")
    assert chat_body(second, history)["messages"] == [
        {"role": "user", "content": "My name is Ada."},
        {"role": "assistant", "content": "Hi Ada."},
        {"role": "user", "content": "What is my name?"},
    ]


def test_text_formats_become_response_format() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    fmt = {"type": "json_schema", "name": "answer", "schema": schema, "strict": True}
    assert chat_body(request(text={"format": fmt}))["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "answer", "schema": schema, "strict": True},
    }
    json_object = request(text={"format": {"type": "json_object"}})
    assert chat_body(json_object)["response_format"] == {"type": "json_object"}
    assert "response_format" not in chat_body(request(text={"format": {"type": "text"}}))


def test_answer_with_text_and_tool_calls() -> None:
    req = request(tools=[TOOL], metadata={"k": "v"}, user="u1")
    body = answer(
        req,
        {
            "role": "assistant",
            "content": "Let me check.",
            "tool_calls": [
                {
                    "id": "call_9",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'},
                }
            ],
        },
        "tool_calls",
    )
    assert body["id"] == "resp_r1"
    assert body["object"] == "response"
    assert body["status"] == "completed"
    assert body["incomplete_details"] is None
    assert body["output"] == [
        {
            "id": "msg_r1_0",
            "type": "message",
            "status": "completed",
            "content": [
                {"type": "output_text", "annotations": [], "logprobs": [], "text": "Let me check."}
            ],
            "role": "assistant",
        },
        {
            "id": "fc_r1_1",
            "type": "function_call",
            "status": "completed",
            "arguments": '{"city":"Oslo"}',
            "call_id": "call_9",
            "name": "get_weather",
        },
    ]
    assert body["usage"] == {
        "input_tokens": 30,
        "input_tokens_details": {"cached_tokens": 16, "cache_write_tokens": 0},
        "output_tokens": 7,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 37,
    }
    assert body["metadata"] == {"k": "v"}
    assert body["user"] == "u1"
    assert body["tools"][0]["name"] == "get_weather"
    assert body["store"] is True


def test_length_is_incomplete_max_output_tokens() -> None:
    body = answer(
        request(max_output_tokens=5), {"role": "assistant", "content": "Once upon"}, "length"
    )
    assert body["status"] == "incomplete"
    assert body["incomplete_details"] == {"reason": "max_output_tokens"}
    assert body["output"][0]["status"] == "incomplete"
    assert body["max_output_tokens"] == 5


def test_the_openai_sdk_reads_the_answer() -> None:
    from openai.types.responses import Response

    body = answer(request(), {"role": "assistant", "content": "Hi there."})
    assert Response.model_validate(body).output_text == "Hi there."


def test_native_upstreams_get_the_expanded_input_and_store_false() -> None:
    req = request(
        input="Second?", previous_response_id="resp_r1", store=True, top_k=5, reasoning=None
    )
    history = [{"type": "message", "role": "user", "content": "First."}]
    body = native_body(req, history)
    assert body["input"] == [*history, {"type": "message", "role": "user", "content": "Second?"}]
    assert body["store"] is False
    assert "previous_response_id" not in body
    assert body["top_k"] == 5
    assert parse_request(body).input[0].content == "First."  # still a valid request


def test_deleted() -> None:
    assert deleted("resp_1") == {"id": "resp_1", "object": "response", "deleted": True}


def test_malformed_completions_still_answer_valid_responses() -> None:
    for completion in (
        {},
        {"choices": "x"},
        {"choices": [None]},
        {"choices": [{"message": "x", "finish_reason": []}]},
    ):
        body = response_from_chat(
            completion,
            response_id="resp_h",
            created=1,
            model="qwen3",
            request=request(),
            usage=USAGE,
        )
        validate_response(body)
        assert body["output"] == []


def test_reasoning_is_the_first_output_item_and_goes_back_with_its_answer() -> None:
    body = answer(request(), {"role": "assistant", "reasoning": "Think.", "content": "Done."})
    assert [item["type"] for item in body["output"]] == ["reasoning", "message"]
    assert body["output"][0]["content"] == [{"type": "reasoning_text", "text": "Think."}]
    assert body["output"][1]["id"] == "msg_r1_1"
    # sent back as input, the reasoning rides on the assistant message it preceded
    history = [{"type": "message", "role": "user", "content": "Go."}, *body["output"]]
    messages = chat_body(request(input="Again."), history)["messages"]
    assert messages[1] == {
        "role": "assistant",
        "content": "Done.",
        "reasoning": "Think.",
    }
    # reasoning with no answer after it is not forwarded
    dangling = [*history[:1], body["output"][0]]
    assert all("reasoning" not in m for m in chat_body(request(input="x"), dangling)["messages"])


def test_a_reasoning_summary_stands_in_for_missing_reasoning_text() -> None:
    history = [
        {"type": "message", "role": "user", "content": "Go."},
        {
            "type": "reasoning",
            "id": "rs_1",
            "summary": [{"type": "summary_text", "text": "Short."}],
        },
        {"type": "function_call", "call_id": "c1", "name": "get_weather", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": "cold"},
    ]
    messages = chat_body(request(input="And?", tools=[TOOL]), history)["messages"]
    assert messages[1]["reasoning"] == "Short."
    assert messages[1]["tool_calls"][0]["id"] == "c1"
