"""Responses API requests: what is accepted, and clear 400s in OpenAI's format."""

from __future__ import annotations

from typing import Any

import pytest
from gateway.errors import InvalidRequestError
from gateway.responses.protocol import (
    FunctionCallItem,
    FunctionCallOutputItem,
    MessageItem,
    ReasoningItem,
    parse_request,
)


def body(**fields: Any) -> dict[str, Any]:
    return {"model": "qwen3", "input": "Hello", **fields}


def refused(data: dict[str, Any]) -> InvalidRequestError:
    with pytest.raises(InvalidRequestError) as caught:
        parse_request(data)
    assert caught.value.status_code == 400
    return caught.value


def test_defaults_are_openais() -> None:
    request = parse_request(body())
    assert request.input == "Hello"
    assert request.store is True
    assert request.stream is False
    assert request.previous_response_id is None


def test_items_of_every_kind_and_easy_messages() -> None:
    request = parse_request(
        body(
            input=[
                {"role": "developer", "content": "Be brief."},
                {
                    "type": "message",
                    "role": "user",
                    "content": [
                        {"type": "input_text", "text": "What is this?"},
                        {"type": "input_image", "image_url": "https://x.test/a.png"},
                    ],
                },
                {"type": "reasoning", "id": "rs_1", "summary": []},
                {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "c1", "output": "42"},
            ]
        )
    )
    kinds = [type(item) for item in request.input]
    assert kinds == [
        MessageItem,
        MessageItem,
        ReasoningItem,
        FunctionCallItem,
        FunctionCallOutputItem,
    ]


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"input": []}, "input"),
        ({"input": [{"type": "message", "role": "robot", "content": "x"}]}, "input.0.role"),
        ({"input": [{"type": "function_call", "name": "f", "arguments": "{}"}]}, "input.0.call_id"),
        ({"max_output_tokens": 0}, "max_output_tokens"),
        ({"temperature": 3}, "temperature"),
        ({"top_p": "1"}, "top_p"),
        ({"store": "yes"}, "store"),
        ({"metadata": {"k": "v" * 513}}, "metadata.k"),
        ({"text": {"format": {"type": "json_schema", "name": "x"}}}, "text.format"),
        ({"text": {"format": {"type": "xml"}}}, "text.format"),
    ],
)
def test_invalid_fields_are_400s_naming_them(fields: dict[str, Any], param: str) -> None:
    assert refused(body(**fields)).param == param


def test_missing_input_is_named() -> None:
    error = refused({"model": "qwen3"})
    assert error.param == "input"
    assert error.message == "Missing required parameter: 'input'."


def test_image_needs_an_inline_or_https_url() -> None:
    part = {"type": "input_image", "file_id": "file-1"}
    error = refused(body(input=[{"role": "user", "content": [part]}]))
    assert "file_id is not supported" in error.message
    part = {"type": "input_image", "image_url": "http://x.test/a.png"}
    assert "https://" in refused(body(input=[{"role": "user", "content": [part]}])).message


def test_hosted_tools_are_refused_by_name() -> None:
    error = refused(body(tools=[{"type": "web_search"}]))
    assert error.param == "tools[0].type"
    assert error.code == "unsupported_tool"
    assert "web_search" in error.message


def test_function_tool_fields_are_checked_where_they_are() -> None:
    error = refused(body(tools=[{"type": "function", "name": "bad name!"}]))
    assert error.param == "tools.0.name"


def test_tool_choice_needs_tools_and_a_known_function() -> None:
    assert refused(body(tool_choice="required")).param == "tool_choice"
    tools = [{"type": "function", "name": "get_weather"}]
    error = refused(body(tools=tools, tool_choice={"type": "function", "name": "other"}))
    assert "other" in error.message
    assert parse_request(body(tools=tools, tool_choice="none")).tool_choice == "none"


def test_sdk_fields_that_change_nothing_are_accepted() -> None:
    # What the openai SDK and the Agents SDK send beside the fields the gateway uses.
    request = parse_request(
        body(include=[], truncation="disabled", reasoning=None, service_tier="auto")
    )
    assert request.model_extra == {
        "truncation": "disabled",
        "reasoning": None,
        "service_tier": "auto",
    }
