"""Tool calling through the official `openai` client: a two-turn tool loop (streamed and
not), named / required tool choice, parallel calls, the deprecated functions shape. Bodies
and chunks validate against OpenAI's schemas; prompt counts of tool requests equal
transformers' apply_chat_template(tools=...); usage records keep every count."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import TEST_MODELS, Gateway
from tests.gateway.chat import tools_support as ts
from tests.support.schemas import validate

QUESTION = "What is the weather in Paris, and what time is it there?"


def _reference_turn2(
    question: str, calls: list[dict[str, Any]], results: list[str]
) -> list[dict[str, Any]]:
    """The second turn as vLLM hands it to the template: arguments parsed to objects,
    the null content of the assistant's tool-call message as ""."""
    parsed = [
        {
            "id": c["id"],
            "type": "function",
            "function": {
                "name": c["function"]["name"],
                "arguments": json.loads(c["function"]["arguments"]),
            },
        }
        for c in calls
    ]
    messages: list[dict[str, Any]] = [
        {"role": "user", "content": question},
        {"role": "assistant", "content": "", "tool_calls": parsed},
    ]
    for call, result in zip(calls, results, strict=True):
        messages.append({"role": "tool", "content": result, "tool_call_id": call["id"]})
    return messages


def _answers(calls: list[dict[str, Any]]) -> list[str]:
    return [json.dumps({"ok": True, "for": c["function"]["name"]}) for c in calls]


def _turn2_messages(calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = [
        {"role": "user", "content": QUESTION},
        {"role": "assistant", "content": None, "tool_calls": calls},
    ]
    for call, answer in zip(calls, _answers(calls), strict=True):
        messages.append({"role": "tool", "tool_call_id": call["id"], "content": answer})
    return messages


@pytest.mark.parametrize("model", ["qwen3", "llama3"])
def test_two_turn_tool_loop(
    gw: Gateway, tokenizers_dir: Path, conformance_schemas: Path, model: str
) -> None:
    key = gw.new_key()
    c = ts.client(gw, key)
    folder = tokenizers_dir / TEST_MODELS[model]
    first_messages = [{"role": "user", "content": QUESTION}]
    raw = c.chat.completions.with_raw_response.create(
        model=model,
        messages=first_messages,  # type: ignore[arg-type]
        tools=ts.TOOLS,  # type: ignore[arg-type]
        tool_choice="required",
        extra_body={"sim": {"tool_calls": 2}},
    )
    body = raw.http_response.json()
    validate(conformance_schemas, "CreateChatCompletionResponse", body)
    choice = body["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    calls = choice["message"]["tool_calls"]
    assert [call["function"]["name"] for call in calls] == ["get_weather", "get_time"]
    assert set(json.loads(calls[0]["function"]["arguments"])) == {"city", "unit"}
    expected_first = ts.reference_prompt_tokens(folder, first_messages, ts.TOOLS)
    assert body["usage"]["prompt_tokens"] == expected_first

    # Turn 2: the client answers each call with a tool message; the model replies in text.
    second = c.chat.completions.create(
        model=model,
        messages=_turn2_messages(calls),  # type: ignore[arg-type]
        tools=ts.TOOLS,  # type: ignore[arg-type]
        max_tokens=9,
    )
    assert second.choices[0].message.content
    assert second.choices[0].finish_reason == "length"
    expected_second = ts.reference_prompt_tokens(
        folder, _reference_turn2(QUESTION, calls, _answers(calls)), ts.TOOLS
    )
    assert second.usage is not None and second.usage.prompt_tokens == expected_second

    first_record, second_record = sorted(gw.records(key), key=lambda r: r.created_at)
    assert first_record.gateway_prompt_tokens == first_record.upstream_prompt_tokens
    assert first_record.prompt_tokens == expected_first
    # A tool call's completion tokens are the upstream's; the gateway's own estimate (the
    # calls' names and argument text) is kept beside it.
    assert first_record.completion_tokens == first_record.upstream_completion_tokens
    assert first_record.completion_tokens == body["usage"]["completion_tokens"]
    assert first_record.gateway_completion_tokens is not None
    assert 0 < first_record.gateway_completion_tokens < first_record.completion_tokens
    assert first_record.finish_reason == "tool_calls"
    assert second_record.gateway_prompt_tokens == second_record.upstream_prompt_tokens
    assert second_record.prompt_tokens == expected_second


@pytest.mark.parametrize("model", ["qwen3", "llama3"])
def test_two_turn_tool_loop_streamed(
    gw: Gateway, tokenizers_dir: Path, conformance_schemas: Path, model: str
) -> None:
    key = gw.new_key()
    folder = tokenizers_dir / TEST_MODELS[model]
    first = {
        "model": model,
        "messages": [{"role": "user", "content": QUESTION}],
        "tools": ts.TOOLS,
        "tool_choice": "required",
        "stream_options": {"include_usage": True},
        "sim": {"tool_calls": 2},
    }
    chunks, _ = ts.stream(gw, key, first, conformance_schemas)
    assert ts.finish_reasons(chunks) == ["tool_calls"]
    assembled = ts.assembled_tool_calls(chunks)
    assert sorted(assembled) == [0, 1]
    for call in assembled.values():
        assert call["id"] and call["name"] in ("get_weather", "get_time")
        assert isinstance(json.loads(call["arguments"]), dict)
        assert call["pieces"] > 1  # the argument JSON arrives split over several chunks
    # The fragments of call 0 all come before those of call 1, as generated.
    order = [
        f["index"] for ch in chunks for c in ch["choices"] for f in c["delta"].get("tool_calls", [])
    ]
    assert order == sorted(order)
    usage = chunks[-1]["usage"]
    assert usage["prompt_tokens"] == ts.reference_prompt_tokens(folder, first["messages"], ts.TOOLS)
    calls = [
        {
            "id": assembled[i]["id"],
            "type": "function",
            "function": {"name": assembled[i]["name"], "arguments": assembled[i]["arguments"]},
        }
        for i in sorted(assembled)
    ]
    second = {
        "model": model,
        "messages": _turn2_messages(calls),
        "tools": ts.TOOLS,
        "max_tokens": 6,
        "stream_options": {"include_usage": True},
    }
    chunks2, request_id = ts.stream(gw, key, second, conformance_schemas)
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks2 if c["choices"])
    assert text and ts.finish_reasons(chunks2) == ["length"]
    expected = ts.reference_prompt_tokens(
        folder, _reference_turn2(QUESTION, calls, _answers(calls)), ts.TOOLS
    )
    assert chunks2[-1]["usage"]["prompt_tokens"] == expected
    records = {r.request_id: r for r in gw.records(key)}
    assert records[request_id].gateway_prompt_tokens == expected
    tool_record = next(r for r in records.values() if r.request_id != request_id)
    assert tool_record.completion_tokens == usage["completion_tokens"]
    assert tool_record.upstream_completion_tokens == usage["completion_tokens"]
    assert tool_record.gateway_completion_tokens  # the estimate from the streamed fragments


@pytest.mark.parametrize("stream", [False, True])
def test_named_tool_choice(gw: Gateway, conformance_schemas: Path, stream: bool) -> None:
    key = gw.new_key()
    body = {
        "model": "qwen3",
        "messages": [{"role": "user", "content": "What time is it in Tokyo?"}],
        "tools": ts.TOOLS,
        "tool_choice": {"type": "function", "function": {"name": "get_time"}},
    }
    if stream:
        chunks, _ = ts.stream(gw, key, body, conformance_schemas)
        [call] = ts.assembled_tool_calls(chunks).values()
        name, arguments = call["name"], call["arguments"]
        finish = ts.finish_reasons(chunks)[-1]
    else:
        completion = ts.client(gw, key).chat.completions.create(**body)  # type: ignore[call-overload]
        [tool_call] = completion.choices[0].message.tool_calls
        name, arguments = tool_call.function.name, tool_call.function.arguments
        finish = completion.choices[0].finish_reason
    assert name == "get_time" and set(json.loads(arguments)) == {"tz"}
    assert finish == "stop"  # OpenAI's (and vLLM's) finish_reason for a named tool_choice


def test_parallel_tool_calls_and_their_opt_out(gw: Gateway) -> None:
    key = gw.new_key()
    c = ts.client(gw, key)
    common: dict[str, Any] = {
        "model": "mistral",
        "messages": [{"role": "user", "content": QUESTION}],
        "tools": ts.TOOLS,
        "tool_choice": "required",
        "extra_body": {"sim": {"tool_calls": 2}},
    }
    both = c.chat.completions.create(**common)
    names = [t.function.name for t in both.choices[0].message.tool_calls or []]
    assert names == ["get_weather", "get_time"]
    assert len({t.id for t in both.choices[0].message.tool_calls or []}) == 2
    single = c.chat.completions.create(**common, parallel_tool_calls=False)
    assert len(single.choices[0].message.tool_calls or []) == 1


def test_auto_tool_choice_answers_in_text_unless_the_model_calls(gw: Gateway) -> None:
    key = gw.new_key()
    c = ts.client(gw, key)
    text = c.chat.completions.create(
        model="qwen3", messages=[{"role": "user", "content": "hi"}], tools=ts.TOOLS, max_tokens=4
    )
    assert text.choices[0].message.content and not text.choices[0].message.tool_calls
    called = c.chat.completions.create(
        model="qwen3",
        messages=[{"role": "user", "content": "hi"}],
        tools=ts.TOOLS,
        extra_body={"sim": {"tool_calls": 1}},
    )
    assert called.choices[0].finish_reason == "tool_calls"
    assert called.choices[0].message.tool_calls


def test_deprecated_functions_are_mapped_to_tools(gw: Gateway, tokenizers_dir: Path) -> None:
    key = gw.new_key()
    c = ts.client(gw, key)
    functions = [ts.WEATHER["function"], ts.CLOCK["function"]]
    completion = c.chat.completions.create(
        model="qwen3",
        messages=[{"role": "user", "content": QUESTION}],
        functions=functions,  # type: ignore[arg-type]
        function_call={"name": "get_weather"},
    )
    [call] = completion.choices[0].message.tool_calls or []
    assert call.function.name == "get_weather"
    expected = ts.reference_prompt_tokens(
        tokenizers_dir / "qwen3", [{"role": "user", "content": QUESTION}], ts.TOOLS
    )
    assert completion.usage is not None and completion.usage.prompt_tokens == expected
    # The old reply shape: assistant function_call, then a `function` message.
    reply = c.chat.completions.create(
        model="qwen3",
        messages=[  # type: ignore[list-item]
            {"role": "user", "content": QUESTION},
            {"role": "assistant", "content": None, "function_call": call.function.model_dump()},
            {"role": "function", "name": "get_weather", "content": '{"temp": 21}'},
        ],
        functions=functions,  # type: ignore[arg-type]
        max_tokens=3,
    )
    assert reply.choices[0].message.content
    assert reply.usage is not None and reply.usage.prompt_tokens > expected


@pytest.mark.parametrize("folder", sorted(set(TEST_MODELS.values())))
def test_tool_prompt_counts_equal_transformers(
    gw: Gateway, tokenizers_dir: Path, folder: str
) -> None:
    """Every family whose template takes tools: the gateway's count (and the usage it
    reports) equals transformers' apply_chat_template(tools=...) count."""
    if not ts.template_supports_tools(tokenizers_dir / folder):
        pytest.skip(f"the {folder} chat template does not render tools")
    model = next(public for public, f in TEST_MODELS.items() if f == folder)
    key = gw.new_key()
    messages = [
        {"role": "system", "content": "Use the tools when they help."},
        {"role": "user", "content": QUESTION},
    ]
    completion = ts.client(gw, key).chat.completions.create(
        model=model,
        messages=messages,  # type: ignore[arg-type]
        tools=ts.TOOLS,  # type: ignore[arg-type]
        max_tokens=2,
    )
    expected = ts.reference_prompt_tokens(tokenizers_dir / folder, messages, ts.TOOLS)
    assert expected > ts.reference_prompt_tokens(tokenizers_dir / folder, messages, None)
    assert completion.usage is not None and completion.usage.prompt_tokens == expected
    [record] = gw.records(key)
    assert record.gateway_prompt_tokens == record.upstream_prompt_tokens == expected
