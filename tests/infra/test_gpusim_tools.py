"""gpusim with tools, as vLLM with a tool parser: the call is generated in the family's own
format and counted as generated tokens, then returned parsed, or streamed with the
argument JSON split across chunks. Also logprobs, JSON output and image parts."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from gpusim import SimConfig, create_app

from tests.support.servers import serve_asgi

Json = dict[str, Any]
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "get_time",
            "parameters": {"type": "object", "properties": {"tz": {"type": "string"}}},
        },
    },
]
ASK = [{"role": "user", "content": "Weather in Oslo?"}]
# The text each family's model writes for a call, as its vLLM tool parser expects it.
MARKERS = {
    "qwen3": ("<tool_call>", '"arguments": '),
    "llama-3-8b-instruct": ('{"name": ', '"parameters": '),
    "mistral-7b-instruct-v0.1": ("TOOL_CALLS", '"arguments": '),
}


@pytest.fixture(scope="module")
def sim(tokenizers_dir: Path) -> Iterator[str]:
    config = SimConfig(tokenizers_dir=tokenizers_dir, multimodal=("qwen3",))
    with serve_asgi(create_app(config)) as url:
        yield url


def _post(sim: str, body: Json) -> httpx.Response:
    return httpx.post(sim + "/v1/chat/completions", json=body, timeout=30)


def _chunks(sim: str, body: Json) -> list[Json]:
    with httpx.stream("POST", sim + "/v1/chat/completions", json=body, timeout=30) as response:
        assert response.status_code == 200
        lines = [line[6:] for line in response.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "[DONE]"
    return [json.loads(line) for line in lines[:-1]]


@pytest.mark.parametrize("model", sorted(MARKERS))
def test_tool_call_is_generated_in_the_family_format_and_parsed(sim: str, model: str) -> None:
    body = {"model": model, "messages": ASK, "tools": TOOLS, "tool_choice": "required"}
    data = _post(sim, {**body, "logprobs": True}).json()
    choice = data["choices"][0]
    [call] = choice["message"]["tool_calls"]
    assert call["type"] == "function" and call["function"]["name"] == "get_weather"
    arguments = json.loads(call["function"]["arguments"])
    assert set(arguments) == {"city", "days"} and isinstance(arguments["days"], int)
    assert choice["finish_reason"] == "tool_calls"
    # The raw generated tokens (seen through logprobs) are the family's own format, and
    # every one of them, plus EOS, is a completion token.
    # (SentencePiece drops a token's leading space when it is decoded alone: compare
    # without spaces.)
    generated = "".join(e["token"] for e in choice["logprobs"]["content"]).replace(" ", "")
    opener, key = MARKERS[model]
    assert opener.replace(" ", "") in generated and key.replace(" ", "") in generated
    assert data["usage"]["completion_tokens"] == len(choice["logprobs"]["content"])
    if model == "mistral-7b-instruct-v0.1":
        assert len(call["id"]) == 9 and call["id"].isalnum()  # MistralToolCall ids


@pytest.mark.parametrize("model", sorted(MARKERS))
def test_streamed_tool_call_fragments(sim: str, model: str) -> None:
    body = {
        "model": model,
        "messages": ASK,
        "tools": TOOLS,
        "tool_choice": "required",
        "sim": {"tool_calls": 2},
        "seed": 4,
    }
    whole = _post(sim, body).json()
    chunks = _chunks(sim, {**body, "stream": True, "stream_options": {"include_usage": True}})
    fragments = [
        f for c in chunks for ch in c["choices"] for f in ch["delta"].get("tool_calls", [])
    ]
    for index, call in enumerate(whole["choices"][0]["message"]["tool_calls"]):
        mine = [f for f in fragments if f["index"] == index]
        head, rest = mine[0], mine[1:]
        assert head["id"] and head["type"] == "function"
        assert head["function"]["name"] == call["function"]["name"]
        assert all("name" not in f["function"] and "id" not in f for f in rest)
        assert len(rest) > 1  # the argument JSON is split across chunks
        assert "".join(f["function"]["arguments"] for f in rest) == call["function"]["arguments"]
    finishes = [ch["finish_reason"] for c in chunks for ch in c["choices"] if ch["finish_reason"]]
    assert finishes == ["tool_calls"]
    assert chunks[-1]["usage"] == whole["usage"]


def test_named_tool_choice_finishes_with_stop(sim: str) -> None:
    named = {"type": "function", "function": {"name": "get_time"}}
    data = _post(sim, {"model": "qwen3", "messages": ASK, "tools": TOOLS, "tool_choice": named})
    choice = data.json()["choices"][0]
    assert [c["function"]["name"] for c in choice["message"]["tool_calls"]] == ["get_time"]
    assert choice["finish_reason"] == "stop"


@pytest.mark.parametrize("model", sorted(MARKERS))
def test_auto_calls_the_tool_the_question_asks_for(sim: str, model: str) -> None:
    """As a real model given tools: the user asks about the weather, get_weather is called
    (in the family's format, parsed as vLLM presents it: content null)."""
    body = {"model": model, "messages": ASK, "tools": TOOLS, "tool_choice": "auto"}
    choice = _post(sim, body).json()["choices"][0]
    [call] = choice["message"]["tool_calls"]
    assert call["function"]["name"] == "get_weather"
    assert choice["message"]["content"] is None and choice["finish_reason"] == "tool_calls"
    # asked for the time (a later tool): that one is called
    time = [{"role": "user", "content": "What time is it in Oslo?"}]
    choice = _post(sim, {**body, "messages": time}).json()["choices"][0]
    assert [c["function"]["name"] for c in choice["message"]["tool_calls"]] == ["get_time"]


def test_auto_answers_in_text_when_no_tool_is_asked_for_or_after_the_result(sim: str) -> None:
    joke = [{"role": "user", "content": "Tell me a joke."}]
    data = _post(sim, {"model": "qwen3", "messages": joke, "tools": TOOLS, "max_tokens": 3})
    message = data.json()["choices"][0]["message"]
    assert message["content"] and "tool_calls" not in message
    call = {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
    answered = [
        *ASK,
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "c1", "content": "12 C, rain"},
    ]
    data = _post(sim, {"model": "qwen3", "messages": answered, "tools": TOOLS, "max_tokens": 3})
    choice = data.json()["choices"][0]
    assert choice["message"]["content"] and "tool_calls" not in choice["message"]
    assert choice["finish_reason"] == "length"


def test_required_answers_content_null_and_named_an_empty_string(sim: str) -> None:
    body = {"model": "qwen3", "messages": ASK, "tools": TOOLS, "tool_choice": "required"}
    assert _post(sim, body).json()["choices"][0]["message"]["content"] is None
    named = {"type": "function", "function": {"name": "get_time"}}
    data = _post(sim, {**body, "tool_choice": named}).json()
    assert data["choices"][0]["message"]["content"] == ""


def test_tool_choice_checks(sim: str) -> None:
    missing = _post(sim, {"model": "qwen3", "messages": ASK, "tool_choice": "required"})
    assert missing.status_code == 400
    unknown = {"type": "function", "function": {"name": "nope"}}
    assert (
        _post(
            sim, {"model": "qwen3", "messages": ASK, "tools": TOOLS, "tool_choice": unknown}
        ).status_code
        == 400
    )


def test_a_tool_call_cut_by_max_tokens_is_returned_as_text(sim: str) -> None:
    body = {"model": "qwen3", "messages": ASK, "tools": TOOLS, "tool_choice": "required"}
    data = _post(sim, {**body, "max_tokens": 5}).json()
    choice = data["choices"][0]
    assert choice["finish_reason"] == "length" and "tool_calls" not in choice["message"]
    assert choice["message"]["content"].startswith("<tool_call>")
    assert data["usage"]["completion_tokens"] == 5


def test_json_object_output_and_image_parts(sim: str, tokenizers_dir: Path) -> None:
    data = _post(
        sim,
        {"model": "qwen3", "messages": ASK, "response_format": {"type": "json_object"}},
    ).json()
    assert isinstance(json.loads(data["choices"][0]["message"]["content"]), dict)
    text_only = _post(sim, {"model": "qwen3", "messages": ASK, "max_tokens": 1}).json()
    image = {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}
    with_image = [{"role": "user", "content": [{"type": "text", "text": ASK[0]["content"]}, image]}]
    mm = _post(sim, {"model": "qwen3", "messages": with_image, "max_tokens": 1}).json()
    assert mm["usage"]["prompt_tokens"] > text_only["usage"]["prompt_tokens"]
    refused = _post(sim, {"model": "llama-3-8b-instruct", "messages": with_image})
    assert refused.status_code == 400  # not configured as multimodal
