"""Messages API requests: what is accepted, and clear 400s naming the field."""

from __future__ import annotations

from typing import Any

import pytest
from gateway.errors import InvalidRequestError
from gateway.messages.protocol import parse_count_tokens, parse_request

TOOL = {"name": "get_weather", "input_schema": {"type": "object"}}


def body(**fields: Any) -> dict[str, Any]:
    return {
        "model": "qwen3",
        "max_tokens": 64,
        "messages": [{"role": "user", "content": "Hi"}],
        **fields,
    }


def refused(data: dict[str, Any]) -> InvalidRequestError:
    with pytest.raises(InvalidRequestError) as caught:
        parse_request(data)
    return caught.value


def test_a_full_request_is_accepted() -> None:
    request = parse_request(
        body(
            system=[{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
            messages=[
                {
                    "role": "user",
                    "content": [
                        {"type": "image", "source": {"type": "url", "url": "https://x.test/a.png"}}
                    ],
                },
                {
                    "role": "assistant",
                    "content": [
                        {"type": "thinking", "thinking": "hmm", "signature": "s"},
                        {"type": "tool_use", "id": "t1", "name": "get_weather", "input": {}},
                    ],
                },
                {
                    "role": "user",
                    "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "cold"}],
                },
            ],
            tools=[TOOL],
            tool_choice={"type": "auto", "disable_parallel_tool_use": True},
            stop_sequences=["END"],
            temperature=1,
            top_p=0.5,
            top_k=40,
            metadata={"user_id": "u1"},
            stream=True,
        )
    )
    assert request.max_tokens == 64
    assert request.custom_tools[0].name == "get_weather"


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"max_tokens": None}, "max_tokens"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "system", "content": "x"}]}, "messages.0.role"),
        ({"messages": [{"role": "user", "content": [{"type": "video"}]}]}, "messages.0.content.0"),
        (
            {
                "messages": [
                    {"role": "user", "content": [{"type": "tool_use", "name": "f", "input": {}}]}
                ]
            },
            "messages.0.content.0.id",
        ),
        ({"temperature": 1.5}, "temperature"),
        ({"top_k": -1}, "top_k"),
        ({"stop_sequences": [""]}, "stop_sequences.0"),
        ({"tool_choice": {"type": "sometimes"}}, "tool_choice"),
        ({"tools": [{"name": "f"}]}, "tools.0.input_schema"),
    ],
)
def test_invalid_fields_are_400s_naming_them(fields: dict[str, Any], param: str) -> None:
    data = body(**fields)
    if data.get("max_tokens") is None:
        del data["max_tokens"]
    error = refused(data)
    assert error.status_code == 400
    assert error.param == param


def test_max_tokens_is_required() -> None:
    data = body()
    del data["max_tokens"]
    assert refused(data).message == "Missing required parameter: 'max_tokens'."


def test_server_tools_are_refused_by_name() -> None:
    error = refused(body(tools=[{"type": "web_search_20250305", "name": "web_search"}]))
    assert error.param == "tools.0.type"
    assert "web_search_20250305" in error.message


def test_tool_choice_needs_a_known_tool() -> None:
    assert refused(body(tool_choice={"type": "any"})).param == "tool_choice"
    error = refused(body(tools=[TOOL], tool_choice={"type": "tool", "name": "other"}))
    assert "other" in error.message


def test_count_tokens_takes_no_max_tokens() -> None:
    request = parse_count_tokens(
        {"model": "qwen3", "messages": [{"role": "user", "content": "Hi"}]}
    )
    assert request.messages[0].content == "Hi"
