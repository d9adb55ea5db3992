"""Messages requests as chat bodies (as vLLM converts them), and chat completions as
`message` bodies valid under Anthropic's published types."""

from __future__ import annotations

from typing import Any

import pytest
from gateway.chat.protocol import ChatCompletionRequest
from gateway.inputs import validate
from gateway.messages.answer import message_from_chat
from gateway.messages.protocol import MessagesRequest, parse_count_tokens, parse_request
from gateway.messages.translate import count_tokens_body, to_chat, token_count

from tests.conformance import ANTHROPIC_MESSAGES, validate_chat_request, validate_message
from tests.support.schemas import validate as validate_schema

TOOL = {"name": "get_weather", "description": "Weather", "input_schema": {"type": "object"}}
USAGE = {
    "prompt_tokens": 40,
    "completion_tokens": 6,
    "total_tokens": 46,
    "prompt_tokens_details": {"cached_tokens": 32},
}


def request(**fields: Any) -> MessagesRequest:
    return parse_request(
        {
            "model": "qwen3",
            "max_tokens": 64,
            "messages": [{"role": "user", "content": "Hi"}],
            **fields,
        }
    )


def chat_body(req: MessagesRequest) -> dict[str, Any]:
    body = to_chat(req)
    validate_chat_request(body)
    validate(ChatCompletionRequest, body)
    return body


def answer(
    req: MessagesRequest, message: dict[str, Any], finish: str, **choice: Any
) -> dict[str, Any]:
    completion = {"choices": [{"index": 0, "message": message, "finish_reason": finish, **choice}]}
    body = message_from_chat(
        completion, message_id="msg_m1", model="qwen3", request=req, usage=USAGE
    )
    validate_message(body)
    return body


def test_fields_map_to_chat() -> None:
    req = request(
        system="Be brief.",
        stop_sequences=["END"],
        temperature=0.5,
        top_p=0.9,
        top_k=40,
        metadata={"user_id": "u1"},
        stream=True,
    )
    assert chat_body(req) == {
        "model": "qwen3",
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
        "max_tokens": 64,
        "stop": ["END"],
        "temperature": 0.5,
        "top_p": 0.9,
        "top_k": 40,
        "user": "u1",
        "stream": True,
        "stream_options": {"include_usage": True},
    }


def test_blocks_tool_use_and_tool_results() -> None:
    req = request(
        system=[{"type": "text", "text": "Use "}, {"type": "text", "text": "tools."}],
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Weather here?"},
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/png", "data": "AA=="},
                    },
                ],
            },
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "...", "signature": "x"},
                    {"type": "text", "text": "Checking."},
                    {
                        "type": "tool_use",
                        "id": "t1",
                        "name": "get_weather",
                        "input": {"city": "Oslo"},
                    },
                ],
            },
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "t1",
                        "content": [{"type": "text", "text": "cold"}],
                    },
                    {"type": "text", "text": "And tomorrow?"},
                ],
            },
        ],
        tools=[TOOL],
        tool_choice={"type": "tool", "name": "get_weather", "disable_parallel_tool_use": True},
    )
    body = chat_body(req)
    assert body["messages"] == [
        {"role": "system", "content": "Use tools."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Weather here?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA=="}},
            ],
        },
        {
            "role": "assistant",
            "content": "Checking.",
            "tool_calls": [
                {
                    "id": "t1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'},
                }
            ],
            "reasoning": "...",
        },
        {"role": "tool", "tool_call_id": "t1", "content": "cold"},
        {"role": "user", "content": "And tomorrow?"},
    ]
    assert body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather",
                "parameters": {"type": "object"},
            },
        }
    ]
    assert body["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert body["parallel_tool_calls"] is False


@pytest.mark.parametrize(
    ("choice", "chat"), [("auto", "auto"), ("any", "required"), ("none", "none")]
)
def test_tool_choices(choice: str, chat: str) -> None:
    assert chat_body(request(tools=[TOOL], tool_choice={"type": choice}))["tool_choice"] == chat


def test_count_tokens_body_is_the_prompt_alone() -> None:
    req = parse_count_tokens(
        {
            "model": "qwen3",
            "system": "S",
            "messages": [{"role": "user", "content": "Hi"}],
            "tools": [TOOL],
        }
    )
    body = count_tokens_body(req)
    assert body["messages"] == [
        {"role": "system", "content": "S"},
        {"role": "user", "content": "Hi"},
    ]
    assert body["tools"][0]["function"]["name"] == "get_weather"
    assert "max_tokens" not in body


def test_text_answer_with_cached_usage() -> None:
    body = answer(request(), {"role": "assistant", "content": "Hello!"}, "stop")
    assert body == {
        "id": "msg_m1",
        "type": "message",
        "role": "assistant",
        "content": [{"type": "text", "text": "Hello!"}],
        "model": "qwen3",
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {
            "input_tokens": 8,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 32,
            "output_tokens": 6,
        },
    }


def test_tool_use_answer() -> None:
    message = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'},
            }
        ],
    }
    # a named tool_choice finishes with `stop` (OpenAI, vLLM): still tool_use
    body = answer(request(tools=[TOOL]), message, "stop")
    assert body["stop_reason"] == "tool_use"
    assert body["content"] == [
        {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Oslo"}}
    ]


def test_unparsable_arguments_are_an_empty_input() -> None:
    message = {
        "role": "assistant",
        "tool_calls": [
            {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{oops"}}
        ],
    }
    assert answer(request(tools=[TOOL]), message, "tool_calls")["content"][0]["input"] == {}


def test_stop_reasons() -> None:
    assert answer(request(), {"content": "x"}, "length")["stop_reason"] == "max_tokens"
    matched = answer(request(stop_sequences=["END"]), {"content": "x"}, "stop", stop_reason="END")
    assert (matched["stop_reason"], matched["stop_sequence"]) == ("stop_sequence", "END")
    eos = answer(request(stop_sequences=["END"]), {"content": "x"}, "stop", stop_reason=None)
    assert (eos["stop_reason"], eos["stop_sequence"]) == ("end_turn", None)


def test_the_anthropic_sdk_reads_the_answer() -> None:
    from anthropic.types import Message

    body = answer(request(), {"role": "assistant", "content": "Hello!"}, "stop")
    parsed = Message.model_validate(body)
    assert parsed.content[0].type == "text"
    assert parsed.usage.cache_read_input_tokens == 32


def test_token_count_is_anthropics_shape() -> None:
    body = token_count(17)
    assert body == {"input_tokens": 17}
    validate_schema(ANTHROPIC_MESSAGES, "MessageTokensCount", body)


def test_malformed_completions_still_answer_valid_messages() -> None:
    for completion in (
        {},
        {"choices": "x"},
        {"choices": [None]},
        {"choices": [{"message": "x", "finish_reason": []}]},
    ):
        body = message_from_chat(
            completion, message_id="msg_h", model="qwen3", request=request(), usage=None
        )
        validate_message(body)
        assert body["content"] == []
        assert body["stop_reason"] == "end_turn"


def test_reasoning_is_a_thinking_block_and_goes_back_as_reasoning() -> None:
    body = answer(
        request(), {"role": "assistant", "reasoning": "Think.", "content": "Done."}, "stop"
    )
    assert body["content"] == [
        {"type": "thinking", "thinking": "Think.", "signature": "msg_m1.0"},
        {"type": "text", "text": "Done."},
    ]
    req = request(
        messages=[
            {"role": "user", "content": "Go."},
            {
                "role": "assistant",
                "content": [*body["content"], {"type": "redacted_thinking", "data": "x"}],
            },
            {"role": "user", "content": "Again."},
        ]
    )
    assert chat_body(req)["messages"][1] == {
        "role": "assistant",
        "content": "Done.",
        "reasoning": "Think.",
    }


def test_claude_codes_billing_header_is_dropped_as_vllm_does() -> None:
    system = [
        {"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1; cch=8f3a;"},
        {"type": "text", "text": "You are a coding agent."},
    ]
    assert chat_body(request(system=system))["messages"][0] == {
        "role": "system",
        "content": "You are a coding agent.",
    }
