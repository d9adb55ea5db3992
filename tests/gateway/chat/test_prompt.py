"""The conversation as the chat template sees it (vLLM's normalization), legacy shapes,
the context-length decision and the upstream statuses clients act on."""

from __future__ import annotations

from typing import Any

import pytest
from gateway.backends.wire import status_error
from gateway.chat.prompt import (
    template_messages,
    template_tools,
    tool_call_texts,
)
from gateway.chat.protocol import ChatCompletionRequest
from gateway.errors import InvalidRequestError, UpstreamError
from gateway.generation import check_context_length, default_max_tokens
from gateway.models.registry import ModelConfig

TOOL = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}


def _request(**body: Any) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate({"model": "m", **body})


def _call(arguments: Any, call_id: str = "c1") -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": "f", "arguments": arguments}}


def test_messages_are_normalized_as_vllm_does() -> None:
    request = _request(
        messages=[
            {"role": "developer", "content": "be brief", "name": "ops"},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "a"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA=="}},
                    {"type": "text", "text": "b"},
                ],
            },
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [_call('{"x": 1}'), _call("not json", "c2")],
            },
            {"role": "tool", "tool_call_id": "c1", "content": [{"type": "text", "text": "r"}]},
            {"role": "assistant", "content": "done", "tool_calls": []},
        ],
        tools=[TOOL],
    )
    assert template_messages(request) == [
        {"role": "system", "content": "be brief", "name": "ops"},
        {"role": "user", "content": "a\nb"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [_call({"x": 1}), _call({}, "c2")],
        },
        {"role": "tool", "content": "r", "tool_call_id": "c1"},
        {"role": "assistant", "content": "done"},  # an empty tool_calls list is dropped
    ]
    assert template_tools(request) == [TOOL]
    assert template_tools(_request(messages=[{"role": "user", "content": "x"}])) is None


def test_deprecated_functions_map_to_tools() -> None:
    request = _request(
        messages=[
            {"role": "user", "content": "q"},
            {
                "role": "assistant",
                "content": None,
                "function_call": {"name": "f", "arguments": "{}"},
            },
            {"role": "function", "name": "f", "content": "42"},
        ],
        functions=[TOOL["function"]],
        function_call={"name": "f"},
    )
    body = request.model_dump(exclude_unset=True, exclude_none=True)
    assert body["tools"] == [TOOL]
    assert body["tool_choice"] == {"type": "function", "function": {"name": "f"}}
    assert body["messages"][1]["tool_calls"] == [_call("{}", "call_1")]
    assert body["messages"][2] == {"role": "tool", "tool_call_id": "call_1", "content": "42"}
    assert "functions" not in body and "function_call" not in body


def test_upstream_body_keeps_response_format_schema_and_sampling_fields() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    request = _request(
        messages=[{"role": "user", "content": "q"}],
        response_format={"type": "json_schema", "json_schema": {"name": "s", "schema": schema}},
        logprobs=True,
        top_logprobs=2,
        logit_bias={"50256": -100},
        seed=9,
        parallel_tool_calls=False,
        tools=[TOOL],
        tool_choice="required",
    )
    body = request.model_dump(exclude_unset=True, exclude_none=True)
    assert body["response_format"]["json_schema"]["schema"] == schema
    assert (body["logprobs"], body["top_logprobs"], body["seed"]) == (True, 2, 9)
    assert body["logit_bias"] == {"50256": -100}
    assert body["parallel_tool_calls"] is False and body["tool_choice"] == "required"


def test_context_length_decision() -> None:
    model = ModelConfig.model_validate(
        {
            "id": "m",
            "tokenizer": "t",
            "upstream": {"type": "openai", "base_url": "http://x"},
            "max_model_len": 100,
        }
    )
    check_context_length(model, prompt_tokens=90, body={"max_tokens": 10})
    with pytest.raises(InvalidRequestError) as raised:
        check_context_length(model, prompt_tokens=90, body={"max_completion_tokens": 11})
    assert raised.value.code == "context_length_exceeded" and raised.value.status_code == 400
    with pytest.raises(InvalidRequestError):
        check_context_length(model, prompt_tokens=100, body={})  # no room to generate
    assert default_max_tokens(model, prompt_tokens=90, default=4096) == 10
    unlimited = model.model_copy(update={"max_model_len": None})
    check_context_length(unlimited, prompt_tokens=10**6, body={"max_tokens": 10**6})


def test_tool_call_texts_for_the_completion_estimate() -> None:
    calls = [_call('{"x": 1}'), {"index": 1, "function": {"arguments": '"y"}'}}]
    assert tool_call_texts(calls) == ['f{"x": 1}', '"y"}']
    assert tool_call_texts(None) == []


@pytest.mark.parametrize("status", [429, 503])
def test_upstream_retry_after_keeps_its_status(status: int) -> None:
    raised = status_error(
        status, b'{"error": {"message": "queue full on node-7"}}', {"Retry-After": "7"}
    )
    assert isinstance(raised, UpstreamError)
    assert raised.status_code == status
    assert raised.headers == {"Retry-After": "7"}
    assert "node-7" not in raised.message  # the upstream's words are not relayed
    plain = status_error(status, b"", {})
    assert plain.status_code == 502
