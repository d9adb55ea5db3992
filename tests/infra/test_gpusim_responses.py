"""gpusim's POST /v1/responses, as vLLM's Responses serving answers it: through the openai
SDK (responses.create / responses.stream) and as raw named events, with the same text and
the same token counts as gpusim's chat route for the same conversation."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from gpusim import SimConfig, create_app
from openai import OpenAI
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter, ValidationError

from tests.support.dropped import drop_after, settled_stats
from tests.support.sdk import openai_client
from tests.support.servers import serve_asgi

Json = dict[str, Any]
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city.",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
    },
    "strict": False,
}
# The same tool as a chat request sends it, in the shape vLLM renders a Responses tool
# (FunctionTool.model_dump() through FunctionDefinition).
WEATHER_CHAT = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": WEATHER["parameters"],
        "strict": False,
    },
}
STREAM_EVENTS = TypeAdapter(ResponseStreamEvent)


@pytest.fixture(scope="module")
def sim(tokenizers_dir: Path) -> Iterator[str]:
    config = SimConfig(tokenizers_dir=tokenizers_dir, models=("qwen3",), multimodal=("qwen3",))
    with serve_asgi(create_app(config)) as url:
        yield url


@pytest.fixture(scope="module")
def client(sim: str) -> OpenAI:
    return openai_client(base_url=sim + "/v1", api_key="unused", max_retries=0)


def _chat(sim: str, body: Json) -> Json:
    response = httpx.post(sim + "/v1/chat/completions", json=body, timeout=30)
    assert response.status_code == 200, response.text
    data: Json = response.json()
    return data


def _with_cache_write_tokens(event: Json) -> Json:
    """The event with the one field vLLM's usage lacks (see the buffered test)."""
    usage = (event.get("response") or {}).get("usage")
    if not usage:
        return event
    details = {**usage["input_tokens_details"], "cache_write_tokens": 0}
    usage = {**usage, "input_tokens_details": details}
    return {**event, "response": {**event["response"], "usage": usage}}


def _events(sim: str, body: Json) -> list[tuple[str, Json]]:
    """(event name, data) of a streamed /v1/responses, every event validated against the
    openai SDK's event types."""
    events = []
    with httpx.stream("POST", sim + "/v1/responses", json=body, timeout=30) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        name = None
        for line in response.iter_lines():
            if line.startswith("event: "):
                name = line[len("event: ") :]
            elif line.startswith("data: "):
                data = json.loads(line[len("data: ") :])
                STREAM_EVENTS.validate_python(_with_cache_write_tokens(data))
                assert name == data["type"]
                events.append((name, data))
    return events


def test_buffered_text_matches_the_chat_route(sim: str, client: OpenAI) -> None:
    response = client.responses.create(model="qwen3", input="Hello there", max_output_tokens=12)
    chat = _chat(
        sim,
        {
            "model": "qwen3",
            "messages": [{"role": "user", "content": "Hello there"}],
            "max_tokens": 12,
        },
    )
    assert response.output_text == chat["choices"][0]["message"]["content"]
    assert response.status == "incomplete"
    assert response.incomplete_details is not None
    assert response.incomplete_details.reason == "max_output_tokens"
    assert response.usage is not None
    assert response.usage.input_tokens == chat["usage"]["prompt_tokens"]
    assert response.usage.output_tokens == chat["usage"]["completion_tokens"] == 12
    assert response.usage.input_tokens_details.cached_tokens == 0
    [item] = response.output
    assert item.type == "message" and item.id.startswith("msg_")
    assert response.id.startswith("resp_") and response.object == "response"


def test_buffered_body_validates_and_echoes_the_request(sim: str) -> None:
    body = {
        "model": "qwen3",
        "input": "Hi",
        "instructions": "Be brief.",
        "metadata": {"k": "v"},
        "temperature": 0.5,
        "user": "u1",
        "store": False,
    }
    data = httpx.post(sim + "/v1/responses", json=body, timeout=30).json()
    # vLLM's usage has no input_tokens_details.cache_write_tokens, which the current
    # OpenAI schema requires: the one difference from OpenAI's Response.
    with pytest.raises(ValidationError) as failure:
        Response.model_validate(data)
    locations = [error["loc"] for error in failure.value.errors()]
    assert locations == [("usage", "input_tokens_details", "cache_write_tokens")]
    assert data["status"] == "completed" and data["incomplete_details"] is None
    assert (data["instructions"], data["metadata"], data["user"]) == ("Be brief.", {"k": "v"}, "u1")
    assert data["temperature"] == 0.5 and data["top_p"] == 1.0
    assert data["tool_choice"] == "none" and data["tools"] == []  # no tools: auto is none
    # usage keeps vLLM's own detail fields beside OpenAI's
    assert data["usage"]["input_tokens_details"]["input_tokens_per_turn"] == []
    assert data["usage"]["total_tokens"] == (
        data["usage"]["input_tokens"] + data["usage"]["output_tokens"]
    )


def test_streamed_text_events_in_vllm_order(sim: str) -> None:
    events = _events(sim, {"model": "qwen3", "input": "Hi", "stream": True, "max_output_tokens": 6})
    names = [name for name, _ in events]
    deltas = names.count("response.output_text.delta")
    assert deltas >= 1
    assert names == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        *["response.output_text.delta"] * deltas,
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",  # vLLM sends completed, status "incomplete", after a cap
    ]
    assert [data["sequence_number"] for _, data in events] == list(range(len(events)))
    text = "".join(d["delta"] for n, d in events if n == "response.output_text.delta")
    done = dict(events)
    assert done["response.output_text.done"]["text"] == text
    assert done["response.output_item.done"]["item"]["content"][0]["text"] == text
    final = done["response.completed"]["response"]
    assert final["status"] == "incomplete" and final["output"][0]["content"][0]["text"] == text
    assert final["id"] == done["response.created"]["response"]["id"]
    assert final["usage"]["output_tokens"] == 6
    chat = _chat(sim, {"model": "qwen3", "messages": [{"role": "user", "content": "Hi"}]})
    assert final["usage"]["input_tokens"] == chat["usage"]["prompt_tokens"]


def test_openai_sdk_stream(client: OpenAI) -> None:
    with client.responses.stream(model="qwen3", input="Tell me a story") as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert final.status == "completed"
    assert final.output_text == "".join(deltas)
    assert final.usage is not None and final.usage.output_tokens == 48  # gpusim's default


def test_function_call_buffered(sim: str, client: OpenAI) -> None:
    response = client.responses.create(
        model="qwen3", input="Weather in Oslo?", tools=[WEATHER], tool_choice="required"
    )
    chat = _chat(
        sim,
        {
            "model": "qwen3",
            "messages": [{"role": "user", "content": "Weather in Oslo?"}],
            "tools": [WEATHER_CHAT],
            "tool_choice": "required",
        },
    )
    [call] = chat["choices"][0]["message"]["tool_calls"]
    [item] = response.output
    assert item.type == "function_call" and item.id.startswith("fc_")
    assert item.name == "get_weather" and item.arguments == call["function"]["arguments"]
    assert item.call_id.startswith("chatcmpl-tool-")  # the parser's id, as vLLM's
    assert response.status == "completed"
    assert response.usage is not None
    assert response.usage.input_tokens == chat["usage"]["prompt_tokens"]
    assert response.usage.output_tokens == chat["usage"]["completion_tokens"]


def test_function_calls_streamed(sim: str) -> None:
    body = {
        "model": "qwen3",
        "input": "Weather?",
        "tools": [WEATHER, {**WEATHER, "name": "get_time"}],
        "tool_choice": "required",
        "sim": {"tool_calls": 2},
        "stream": True,
    }
    events = _events(sim, body)
    names = [n for n, _ in events if n != "response.function_call_arguments.delta"]
    assert names == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    for index in (0, 1):
        mine = [d for _, d in events if d.get("output_index") == index]
        added, done = mine[0]["item"], mine[-1]["item"]
        args = [d["delta"] for d in mine if d["type"] == "response.function_call_arguments.delta"]
        assert len(args) > 1 and "".join(args) == done["arguments"]
        assert added["arguments"] == "" and added["status"] == "in_progress"
        assert done["call_id"] == added["call_id"] and done["call_id"].startswith("call_")
        assert json.loads(done["arguments"])
    final = events[-1][1]["response"]
    assert [i["name"] for i in final["output"]] == ["get_weather", "get_time"]
    # vLLM rebuilds the final output from the whole text: its ids are new ones
    assert final["output"][0]["call_id"] != events[2][1]["item"]["call_id"]


def test_conversation_items_count_like_chat(sim: str) -> None:
    """instructions, input_text parts, a function_call and its output, an assistant
    message: the prompt vLLM renders is the chat conversation below."""
    items = [
        {
            "type": "message",
            "role": "user",
            "content": [{"type": "input_text", "text": "Weather?"}],
        },
        {
            "type": "function_call",
            "call_id": "c1",
            "name": "get_weather",
            "arguments": '{"city": "Oslo"}',
        },
        {"type": "function_call_output", "call_id": "c1", "output": "Sunny, 21 C"},
        {
            "type": "message",
            "role": "assistant",
            "content": [{"type": "output_text", "text": "It is sunny."}],
        },
        {"role": "user", "content": "And tomorrow?"},
    ]
    body = {"model": "qwen3", "input": items, "instructions": "Be brief.", "tools": [WEATHER]}
    data = httpx.post(sim + "/v1/responses", json={**body, "max_output_tokens": 3}, timeout=30)
    assert data.status_code == 200, data.text
    call = {"id": "c1", "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "Weather?"}]},
        {"role": "assistant", "tool_calls": [{**call, "type": "function"}]},
        {"role": "tool", "content": "Sunny, 21 C", "tool_call_id": "c1"},
        {"role": "assistant", "content": "It is sunny."},
        {"role": "user", "content": "And tomorrow?"},
    ]
    chat = _chat(
        sim, {"model": "qwen3", "messages": messages, "tools": [WEATHER_CHAT], "max_tokens": 3}
    )
    assert data.json()["usage"]["input_tokens"] == chat["usage"]["prompt_tokens"]


def test_input_image_counts_as_the_chat_image_part(sim: str) -> None:
    url = "https://example.com/a.png"
    content = [
        {"type": "input_text", "text": "What is this?"},
        {"type": "input_image", "image_url": url},
    ]
    data = httpx.post(
        sim + "/v1/responses",
        json={
            "model": "qwen3",
            "input": [{"role": "user", "content": content}],
            "max_output_tokens": 1,
        },
        timeout=30,
    ).json()
    chat_content = [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": url}},
    ]
    chat = _chat(
        sim,
        {
            "model": "qwen3",
            "messages": [{"role": "user", "content": chat_content}],
            "max_tokens": 1,
        },
    )
    assert data["usage"]["input_tokens"] == chat["usage"]["prompt_tokens"]


def test_store_is_off_as_in_vllm_by_default(sim: str) -> None:
    previous = httpx.post(
        sim + "/v1/responses",
        json={"model": "qwen3", "input": "Hi", "previous_response_id": "resp_abc"},
        timeout=30,
    )
    assert previous.status_code == 404
    assert previous.json()["error"] == {
        "message": "Response with id 'resp_abc' not found.",
        "type": "invalid_request_error",
        "param": "response_id",
        "code": 404,
    }
    assert httpx.get(sim + "/v1/responses/resp_abc", timeout=30).status_code == 404
    background = httpx.post(
        sim + "/v1/responses",
        json={"model": "qwen3", "input": "Hi", "background": True},
        timeout=30,
    )
    assert background.status_code == 400 and background.json()["error"]["param"] == "background"


def test_invalid_requests(sim: str) -> None:
    def post(body: Json) -> httpx.Response:
        return httpx.post(sim + "/v1/responses", json=body, timeout=30)

    required = post({"model": "qwen3", "input": "Hi", "tool_choice": "required"})
    assert required.status_code == 400
    assert required.json()["error"]["type"] == "Bad Request"  # vLLM's validation handler
    assert required.json()["error"]["param"] == "tool_choice"
    named = post(
        {
            "model": "qwen3",
            "input": "Hi",
            "tools": [WEATHER],
            "tool_choice": {"type": "function", "name": "x"},
        }
    )
    assert named.status_code == 400
    assert post({"model": "qwen3"}).status_code == 400  # no input
    assert post({"model": "qwen3", "input": "Hi", "prompt": {"id": "p"}}).status_code == 400
    unknown = post({"model": "nope", "input": "Hi"})
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == 404
    refused = post({"model": "qwen3", "input": "Hi", "sim": {"fail_status": 503, "retry_after": 2}})
    assert refused.status_code == 503 and refused.headers["retry-after"] == "2"


def test_failure_mid_stream_drops_the_connection(sim: str) -> None:
    """vLLM's error event fails its own validation, so the stream just stops."""
    body = {"model": "qwen3", "input": "Hi", "stream": True, "sim": {"fail_after_tokens": 3}}
    seen: list[str] = []
    url = sim + "/v1/responses"
    with pytest.raises(httpx.HTTPError), httpx.stream("POST", url, json=body, timeout=30) as sent:
        seen.extend(sent.iter_lines())
    assert "event: response.output_text.delta" in seen
    assert "event: response.completed" not in seen


def test_client_disconnect_cancels_the_generation(sim: str) -> None:
    httpx.post(sim + "/sim/reset", timeout=5)
    slow = {"tpot_ms": 50, "completion_tokens": 200}
    drop_after(
        sim,
        "/v1/responses",
        {"model": "qwen3", "input": "Hi", "stream": True, "sim": slow},
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
    items = [
        {"role": "user", "content": "Weather?"},
        {
            "type": "message",
            "role": "assistant",
            "content": [{"type": "output_text", "text": "Sunny."}],
        },
        {"role": "user", "content": [{"type": "input_text", "text": "Sure?"}]},
    ]
    body = {"model": model, "input": items, "instructions": "Be brief.", "max_output_tokens": 3}
    response = httpx.post(families + "/v1/responses", json=body, timeout=30)
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": "Sunny."},
        {"role": "user", "content": [{"type": "text", "text": "Sure?"}]},
    ]
    chat = httpx.post(
        families + "/v1/chat/completions",
        json={"model": model, "messages": messages, "max_tokens": 3},
        timeout=30,
    )
    assert response.status_code == chat.status_code
    if chat.status_code == 200:
        assert response.json()["usage"]["input_tokens"] == chat.json()["usage"]["prompt_tokens"]
        assert (
            response.json()["output"][0]["content"][0]["text"]
            == (chat.json()["choices"][0]["message"]["content"])
        )
    else:
        assert response.json() == chat.json()


def test_output_text_logprobs(sim: str) -> None:
    """include message.output_text.logprobs: the chat route's per-token logprobs, on the
    output text and (for the steps that carry text) on each delta."""
    body = {
        "model": "qwen3",
        "input": "Hi",
        "max_output_tokens": 8,
        "include": ["message.output_text.logprobs"],
        "top_logprobs": 2,
    }
    data = httpx.post(sim + "/v1/responses", json=body, timeout=30).json()
    chat = _chat(
        sim,
        {
            "model": "qwen3",
            "messages": [{"role": "user", "content": "Hi"}],
            "max_tokens": 8,
            "logprobs": True,
            "top_logprobs": 2,
        },
    )
    logprobs = data["output"][0]["content"][0]["logprobs"]
    expected = chat["choices"][0]["logprobs"]["content"]
    assert [(e["token"], e["logprob"]) for e in logprobs] == [
        (e["token"], e["logprob"]) for e in expected
    ]
    assert all(len(e["top_logprobs"]) == 2 and "bytes" in e for e in logprobs)
    assert data["top_logprobs"] == 2
    events = _events(sim, {**body, "stream": True})
    deltas = [d for _, d in events if d["type"] == "response.output_text.delta"]
    assert all(
        len(d["logprobs"]) == 1 and len(d["logprobs"][0]["top_logprobs"]) == 2 for d in deltas
    )
    final = events[-1][1]["response"]["output"][0]["content"][0]["logprobs"]
    assert final == logprobs
    plain = httpx.post(sim + "/v1/responses", json={"model": "qwen3", "input": "Hi"}, timeout=30)
    assert plain.json()["output"][0]["content"][0]["logprobs"] is None


def test_created_is_sent_before_the_first_token(sim: str) -> None:
    """vLLM yields response.created and response.in_progress before the engine's first
    output: with a first token a minute away, both arrive (then the client leaves)."""
    httpx.post(sim + "/sim/reset", timeout=5)
    body = {"model": "qwen3", "input": "Hi", "stream": True, "sim": {"ttft_ms": 60_000}}
    drop_after(sim, "/v1/responses", body, events=2)
    assert settled_stats(sim, cancelled=1, active=0)["completed"] == 0


@pytest.fixture(scope="module")
def stores(tokenizers_dir: Path) -> Iterator[tuple[str, str]]:
    """Two replicas that keep responses (vLLM with VLLM_ENABLE_RESPONSES_API_STORE=1)."""
    config = SimConfig(tokenizers_dir=tokenizers_dir, models=("qwen3",), responses_store=True)
    with serve_asgi(create_app(config)) as one, serve_asgi(create_app(config)) as two:
        yield one, two


def test_stored_responses_continue_a_conversation_on_one_replica(
    stores: tuple[str, str],
) -> None:
    one, two = stores
    client = openai_client(base_url=one + "/v1", api_key="unused", max_retries=0)
    history: list[Json] = [{"role": "system", "content": "Be brief."}]
    previous = None
    for question in ("Hello", "Where is the lighthouse?", "And the boats?"):
        with client.responses.stream(
            model="qwen3",
            input=question,
            instructions="Be brief.",
            previous_response_id=previous,
            max_output_tokens=5,
        ) as stream:
            final = stream.get_final_response()
        history.append({"role": "user", "content": question})
        chat = _chat(one, {"model": "qwen3", "messages": history, "max_tokens": 5})
        assert final.usage is not None
        assert final.usage.input_tokens == chat["usage"]["prompt_tokens"]  # the whole history
        history.append({"role": "assistant", "content": final.output_text})
        previous = final.id
    stored = httpx.get(f"{one}/v1/responses/{previous}", timeout=30)
    assert stored.status_code == 200 and stored.json()["id"] == previous
    # the trap the gateway avoids: another replica never saw it
    elsewhere = httpx.post(
        two + "/v1/responses",
        json={"model": "qwen3", "input": "Go on", "previous_response_id": previous},
        timeout=30,
    )
    assert elsewhere.status_code == 404
    cancel = httpx.post(f"{one}/v1/responses/{previous}/cancel", timeout=30)
    assert cancel.status_code == 400
    assert cancel.json()["error"]["message"] == "Cannot cancel a synchronous response."
    unstored = httpx.post(
        one + "/v1/responses", json={"model": "qwen3", "input": "Hi", "store": False}, timeout=30
    ).json()
    assert httpx.get(f"{one}/v1/responses/{unstored['id']}", timeout=30).status_code == 404


def test_a_stored_function_call_is_not_carried_over(stores: tuple[str, str]) -> None:
    """vLLM continues from a stored response's output messages only: its function_call
    items are not part of the next prompt."""
    one, _ = stores
    first = httpx.post(
        one + "/v1/responses",
        json={"model": "qwen3", "input": "Weather?", "tools": [WEATHER], "tool_choice": "required"},
        timeout=30,
    ).json()
    [call] = first["output"]
    output = {"type": "function_call_output", "call_id": call["call_id"], "output": "Sunny"}
    second = httpx.post(
        one + "/v1/responses",
        json={
            "model": "qwen3",
            "input": [output],
            "tools": [WEATHER],
            "previous_response_id": first["id"],
            "max_output_tokens": 2,
        },
        timeout=30,
    ).json()
    messages = [
        {"role": "user", "content": "Weather?"},
        {"role": "tool", "content": "Sunny", "tool_call_id": call["call_id"]},
    ]
    chat = _chat(
        one, {"model": "qwen3", "messages": messages, "tools": [WEATHER_CHAT], "max_tokens": 2}
    )
    assert second["usage"]["input_tokens"] == chat["usage"]["prompt_tokens"]
