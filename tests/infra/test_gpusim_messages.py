"""gpusim's POST /v1/messages and /v1/messages/count_tokens, as vLLM's Anthropic serving
answers them: through the anthropic SDK (messages.create / messages.stream, a tool_use /
tool_result round trip) and as raw events, with the text and token counts of gpusim's chat
route for the conversation vLLM converts the request into."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import pytest
from anthropic.types import Message, RawMessageStreamEvent
from gpusim import SimConfig, create_app
from pydantic import TypeAdapter

from tests.support.dropped import drop_after, settled_stats
from tests.support.sdk import anthropic_client
from tests.support.servers import serve_asgi

Json = dict[str, Any]
SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}}}
WEATHER = {"name": "get_weather", "description": "The weather in a city.", "input_schema": SCHEMA}
# The same tool as vLLM hands it to the chat template (ChatCompletionToolsParam built with
# strict and defer_loading, null when the Anthropic tool has none).
WEATHER_CHAT = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": SCHEMA,
        "strict": None,
        "defer_loading": None,
    },
}
ASK = [{"role": "user", "content": "Weather in Oslo?"}]
STREAM_EVENTS = TypeAdapter(RawMessageStreamEvent)


@pytest.fixture(scope="module")
def sim(tokenizers_dir: Path) -> Iterator[str]:
    config = SimConfig(tokenizers_dir=tokenizers_dir, models=("qwen3",))
    with serve_asgi(create_app(config)) as url:
        yield url


@pytest.fixture(scope="module")
def client(sim: str) -> anthropic.Anthropic:
    return anthropic_client(base_url=sim, api_key="unused", max_retries=0)


def _chat(sim: str, body: Json) -> Json:
    response = httpx.post(sim + "/v1/chat/completions", json=body, timeout=30)
    assert response.status_code == 200, response.text
    data: Json = response.json()
    return data


def _post(sim: str, body: Json, path: str = "/v1/messages") -> httpx.Response:
    return httpx.post(sim + path, json=body, timeout=30)


def _events(sim: str, body: Json) -> list[Json]:
    """The data of each event of a streamed /v1/messages, validated against the anthropic
    SDK's stream event types (the ``error`` event is checked by its test)."""
    events = []
    with httpx.stream("POST", sim + "/v1/messages", json=body, timeout=30) as response:
        assert response.status_code == 200
        name = None
        for line in response.iter_lines():
            if line.startswith("event: "):
                name = line[len("event: ") :]
            elif line.startswith("data: "):
                data = json.loads(line[len("data: ") :])
                assert data["type"] == name
                if name != "error":
                    STREAM_EVENTS.validate_python(data)
                events.append(data)
    return events


def test_create_matches_the_chat_route(sim: str, client: anthropic.Anthropic) -> None:
    message = client.messages.create(model="qwen3", max_tokens=10, messages=ASK)
    chat = _chat(sim, {"model": "qwen3", "messages": ASK, "max_tokens": 10})
    assert [b.type for b in message.content] == ["text"]
    assert message.content[0].text == chat["choices"][0]["message"]["content"]
    assert message.stop_reason == "max_tokens" and message.stop_sequence is None
    assert message.usage.input_tokens == chat["usage"]["prompt_tokens"]
    assert message.usage.output_tokens == chat["usage"]["completion_tokens"] == 10
    assert message.usage.cache_read_input_tokens is None  # no prompt details: no cache fields
    assert message.id.startswith("chatcmpl-")  # vLLM keeps the chat completion's id


def test_buffered_body_validates_and_omits_nulls(sim: str) -> None:
    data = _post(sim, {"model": "qwen3", "max_tokens": 200, "messages": ASK}).json()
    Message.model_validate(data)
    assert data["stop_reason"] == "end_turn" and "stop_sequence" not in data
    assert set(data["usage"]) == {"input_tokens", "output_tokens"}


def test_stream_event_order(sim: str) -> None:
    events = _events(sim, {"model": "qwen3", "max_tokens": 6, "messages": ASK, "stream": True})
    names = [e["type"] for e in events]
    deltas = names.count("content_block_delta")
    assert names == [
        "message_start",
        "content_block_start",
        *["content_block_delta"] * deltas,
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]  # vLLM sends no ping
    start = events[0]["message"]
    chat = _chat(sim, {"model": "qwen3", "messages": ASK, "max_tokens": 6})
    assert start["content"] == [] and start["stop_reason"] is None
    assert start["usage"] == {"input_tokens": chat["usage"]["prompt_tokens"], "output_tokens": 0}
    text = "".join(e["delta"]["text"] for e in events if e["type"] == "content_block_delta")
    assert text == chat["choices"][0]["message"]["content"]
    assert events[1]["content_block"] == {"type": "text", "text": ""}
    assert events[-2]["delta"] == {"stop_reason": "max_tokens"}
    assert events[-2]["usage"] == {
        "input_tokens": chat["usage"]["prompt_tokens"],
        "output_tokens": 6,
    }


def test_sdk_stream(client: anthropic.Anthropic) -> None:
    with client.messages.stream(model="qwen3", max_tokens=100, messages=ASK) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert final.content[0].text == text
    assert final.stop_reason == "end_turn" and final.usage.output_tokens == 48


def test_stop_sequence(sim: str) -> None:
    chat = _chat(sim, {"model": "qwen3", "messages": ASK})
    stop = chat["choices"][0]["message"]["content"].split()[3]
    data = _post(
        sim, {"model": "qwen3", "max_tokens": 100, "messages": ASK, "stop_sequences": [stop]}
    ).json()
    assert data["stop_reason"] == "stop_sequence" and data["stop_sequence"] == stop
    streamed = _events(
        sim,
        {
            "model": "qwen3",
            "max_tokens": 100,
            "messages": ASK,
            "stop_sequences": [stop],
            "stream": True,
        },
    )
    assert streamed[-2]["delta"] == {"stop_reason": "stop_sequence", "stop_sequence": stop}


def test_tool_use_round_trip(sim: str, client: anthropic.Anthropic) -> None:
    first = client.messages.create(
        model="qwen3",
        max_tokens=200,
        messages=ASK,
        tools=[WEATHER],
        tool_choice={"type": "any"},
    )
    assert first.stop_reason == "tool_use"
    [use] = first.content
    assert use.type == "tool_use" and use.name == "get_weather"
    assert set(use.input) == {"city", "days"}
    chat_first = _chat(
        sim, {"model": "qwen3", "messages": ASK, "tools": [WEATHER_CHAT], "tool_choice": "required"}
    )
    assert first.usage.input_tokens == chat_first["usage"]["prompt_tokens"]
    assert first.usage.output_tokens == chat_first["usage"]["completion_tokens"]

    turn = [
        *ASK,
        {"role": "assistant", "content": [use.model_dump(exclude_none=True)]},
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": use.id, "content": "Sunny, 21 C"},
                {"type": "text", "text": "Thanks. Tomorrow?"},
            ],
        },
    ]
    second = client.messages.create(
        model="qwen3",
        max_tokens=5,
        messages=turn,
        tools=[WEATHER],
        system=[{"type": "text", "text": "Be brief. "}, {"type": "text", "text": "Use tools."}],
    )
    assert second.content[0].type == "text" and second.stop_reason == "max_tokens"
    call = {
        "id": use.id,
        "type": "function",
        "function": {"name": "get_weather", "arguments": json.dumps(use.input)},
    }
    chat_turn = [
        {"role": "system", "content": "Be brief. Use tools."},
        *ASK,
        {"role": "assistant", "tool_calls": [call]},
        {"role": "tool", "tool_call_id": use.id, "content": "Sunny, 21 C"},
        {"role": "user", "content": "Thanks. Tomorrow?"},
    ]
    chat_second = _chat(
        sim, {"model": "qwen3", "messages": chat_turn, "tools": [WEATHER_CHAT], "max_tokens": 5}
    )
    assert second.usage.input_tokens == chat_second["usage"]["prompt_tokens"]
    counted = _post(
        sim,
        {"model": "qwen3", "messages": turn, "tools": [WEATHER], "system": "Be brief. Use tools."},
        "/v1/messages/count_tokens",
    ).json()
    assert counted == {
        "input_tokens": chat_second["usage"]["prompt_tokens"],
        "context_management": {"original_input_tokens": chat_second["usage"]["prompt_tokens"]},
    }


def test_tool_use_streamed(sim: str) -> None:
    body = {
        "model": "qwen3",
        "max_tokens": 300,
        "messages": ASK,
        "tools": [WEATHER, {**WEATHER, "name": "get_time"}],
        "tool_choice": {"type": "any"},
        "sim": {"tool_calls": 2},
        "stream": True,
    }
    events = _events(sim, body)
    starts = [e for e in events if e["type"] == "content_block_start"]
    assert [s["content_block"]["name"] for s in starts] == ["get_weather", "get_time"]
    assert [s["index"] for s in starts] == [0, 1]
    for start in starts:
        assert start["content_block"]["input"] == {}
        pieces = [
            e["delta"]["partial_json"]
            for e in events
            if e["type"] == "content_block_delta" and e["index"] == start["index"]
        ]
        assert len(pieces) > 1 and set(json.loads("".join(pieces))) == {"city", "days"}
    assert events[-2]["delta"] == {"stop_reason": "tool_use"}
    named = {**body, "tool_choice": {"type": "tool", "name": "get_time"}}
    assert _events(sim, named)[-2]["delta"] == {"stop_reason": "end_turn"}  # as vLLM maps stop


def test_errors(sim: str) -> None:
    missing = _post(sim, {"model": "qwen3", "messages": ASK})
    assert missing.status_code == 400
    # a validation failure is answered by vLLM's global handler, in OpenAI's shape
    assert missing.json()["error"]["type"] == "Bad Request"
    assert missing.json()["error"]["param"] == "body.max_tokens"
    assert _post(sim, {"model": "qwen3", "max_tokens": 0, "messages": ASK}).status_code == 400
    unknown = _post(sim, {"model": "nope", "max_tokens": 5, "messages": ASK})
    assert unknown.status_code == 404
    assert unknown.json() == {
        "type": "error",
        "error": {"type": "NotFoundError", "message": "The model `nope` does not exist."},
    }
    busy = _post(
        sim,
        {
            "model": "qwen3",
            "max_tokens": 5,
            "messages": ASK,
            "sim": {"fail_status": 503, "retry_after": 3},
        },
    )
    assert busy.status_code == 503 and busy.headers["retry-after"] == "3"
    assert (
        busy.json()["type"] == "error" and busy.json()["error"]["type"] == "ServiceUnavailableError"
    )
    image = {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": "AA=="},
    }
    text_only = _post(
        sim, {"model": "qwen3", "max_tokens": 5, "messages": [{"role": "user", "content": [image]}]}
    )
    assert text_only.status_code == 400 and text_only.json()["error"]["type"] == "BadRequestError"
    count_unknown = _post(sim, {"model": "nope", "messages": ASK}, "/v1/messages/count_tokens")
    assert count_unknown.status_code == 404 and count_unknown.json()["type"] == "error"


def test_failure_mid_stream_is_an_error_event(sim: str) -> None:
    body = {
        "model": "qwen3",
        "max_tokens": 50,
        "messages": ASK,
        "stream": True,
        "sim": {"fail_after_tokens": 3},
    }
    events = _events(sim, body)
    assert events[-1]["type"] == "error" and events[-1]["error"]["type"] == "internal_error"
    assert "message_stop" not in [e["type"] for e in events]


def test_client_disconnect_cancels_the_generation(sim: str) -> None:
    httpx.post(sim + "/sim/reset", timeout=5)
    slow = {"tpot_ms": 50, "completion_tokens": 200}
    drop_after(
        sim,
        "/v1/messages",
        {"model": "qwen3", "max_tokens": 500, "messages": ASK, "stream": True, "sim": slow},
        events=6,
    )
    final = settled_stats(sim, cancelled=1, active=0)
    assert final["completed"] == 0 and final["requests"] == 1


FAMILIES = ("llama-3-8b-instruct", "mistral-7b-instruct-v0.1", "tinyllama-1.1b-chat-v1.0")


@pytest.fixture(scope="module")
def families(tokenizers_dir: Path) -> Iterator[str]:
    with serve_asgi(create_app(SimConfig(tokenizers_dir=tokenizers_dir, models=FAMILIES))) as url:
        yield url


@pytest.mark.parametrize("model", FAMILIES)
def test_every_family_counts_like_chat(families: str, model: str) -> None:
    """A system prompt and a short exchange: the same status, and when the template takes
    it the same prompt tokens, as the chat route."""
    turn = [*ASK, {"role": "assistant", "content": "Sunny."}, {"role": "user", "content": "Sure?"}]
    body = {"model": model, "max_tokens": 3, "system": "Be brief.", "messages": turn}
    message = _post(families, body)
    chat = httpx.post(
        families + "/v1/chat/completions",
        json={
            "model": model,
            "max_tokens": 3,
            "messages": [{"role": "system", "content": "Be brief."}, *turn],
        },
        timeout=30,
    )
    assert message.status_code == chat.status_code
    if chat.status_code == 200:
        assert message.json()["usage"]["input_tokens"] == chat.json()["usage"]["prompt_tokens"]
    else:  # the template refuses a system message: the same 400, in Anthropic's shape
        assert message.json()["error"]["message"] == chat.json()["error"]["message"]
