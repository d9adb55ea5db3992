"""POST /v1/messages and /v1/messages/count_tokens through the gateway, end to end, with
the `anthropic` SDK and LangChain's ChatAnthropic; bodies, events and errors checked
against Anthropic's published types, prompt counts against transformers' own count."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anthropic
import httpx
import pytest

from tests.conformance import validate_anthropic_error, validate_message, validate_message_event
from tests.conftest import TEST_MODELS, Gateway
from tests.support import reference
from tests.support.sdk import anthropic_client

MODEL = "qwen3"
WEATHER_TOOL: dict[str, Any] = {
    "name": "get_weather",
    "description": "The weather in a city.",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}


def client(gateway: Gateway, key: str) -> anthropic.Anthropic:
    # The SDK sends the key as x-api-key, and anthropic-version.
    return anthropic_client(base_url=gateway.url, api_key=key, max_retries=0, timeout=30)


def expected(tokenizers_dir: Path, messages: list[dict[str, Any]]) -> int:
    return reference.prompt_tokens(tokenizers_dir / TEST_MODELS[MODEL], messages)


def test_create_is_counted_as_chat_and_recorded(gateway: Gateway, tokenizers_dir: Path) -> None:
    key = gateway.new_key()
    raw = client(gateway, key).messages.with_raw_response.create(
        model=MODEL,
        system="Be terse.",
        messages=[{"role": "user", "content": "Hello there!"}],
        max_tokens=9,
    )
    body = raw.http_response.json()
    validate_message(body)
    request_id = raw.headers["x-request-id"]
    prompt = expected(
        tokenizers_dir,
        [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "Hello there!"}],
    )
    assert body["id"] == f"msg_{request_id}"
    assert body["stop_reason"] == "max_tokens"
    assert body["usage"]["input_tokens"] == prompt and body["usage"]["output_tokens"] == 9
    [record] = gateway.records(key)
    assert (record.route, record.status, record.request_id) == ("messages", "completed", request_id)
    assert (record.prompt_tokens, record.completion_tokens) == (prompt, 9)


def test_stream_and_a_tool_use_round_trip(gateway: Gateway, tokenizers_dir: Path) -> None:
    key = gateway.new_key()
    sdk = client(gateway, key)
    question = {"role": "user", "content": "What is the weather in Paris?"}
    names: list[str] = []
    with sdk.messages.stream(
        model=MODEL,
        messages=[question],  # type: ignore[list-item]
        tools=[WEATHER_TOOL],  # type: ignore[list-item]
        tool_choice={"type": "any"},
        max_tokens=200,
    ) as stream:
        for event in stream:
            if event.type in ("text", "input_json", "citation", "thinking", "signature"):
                continue  # the SDK's own derived events
            validate_message_event(event.type, event.model_dump(mode="json"))
            names.append(event.type)
        first = stream.get_final_message()
    assert names[0] == "message_start" and names[-1] == "message_stop"
    validate_message(first.model_dump(mode="json"))
    assert first.stop_reason == "tool_use"
    [use] = [block for block in first.content if block.type == "tool_use"]
    assert use.name == "get_weather" and "city" in use.input  # type: ignore[operator]

    answer = sdk.messages.create(
        model=MODEL,
        messages=[
            question,  # type: ignore[list-item]
            {"role": "assistant", "content": [block.model_dump() for block in first.content]},  # type: ignore[misc]
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "Sunny."}],
            },
        ],
        tools=[WEATHER_TOOL],  # type: ignore[list-item]
        max_tokens=8,
    )
    validate_message(answer.model_dump(mode="json"))
    assert answer.content and answer.content[0].type == "text"
    records = sorted(gateway.records(key), key=lambda r: r.created_at)
    assert [(r.route, r.stream, r.status) for r in records] == [
        ("messages", True, "completed"),
        ("messages", False, "completed"),
    ]
    assert first.usage.input_tokens == records[0].prompt_tokens
    assert answer.usage.input_tokens == records[1].prompt_tokens > records[0].prompt_tokens


def test_count_tokens_is_the_billed_count_and_not_billed(
    gateway: Gateway, tokenizers_dir: Path
) -> None:
    key = gateway.new_key(rpm=2)
    messages: list[Any] = [{"role": "user", "content": "Count me, please."}]
    counted = client(gateway, key).messages.count_tokens(
        model=MODEL, system="Be terse.", messages=messages
    )
    assert counted.input_tokens == expected(
        tokenizers_dir,
        [
            {"role": "system", "content": "Be terse."},
            {"role": "user", "content": "Count me, please."},
        ],
    )
    assert gateway.records(key) == []  # not billed: no usage record
    created = client(gateway, key).messages.create(
        model=MODEL, system="Be terse.", messages=messages, max_tokens=4
    )
    assert created.usage.input_tokens == counted.input_tokens
    # Rate limited with the key's other requests: the third in the minute is refused.
    with pytest.raises(anthropic.RateLimitError) as refused:
        client(gateway, key).messages.count_tokens(model=MODEL, messages=messages)
    validate_anthropic_error(refused.value.body)


@pytest.mark.parametrize(
    ("headers", "body", "status", "kind"),
    [
        (
            {},
            {"model": MODEL, "max_tokens": 4, "messages": [{"role": "user", "content": "x"}]},
            401,
            "authentication_error",
        ),
        (
            None,
            {"model": MODEL, "messages": [{"role": "user", "content": "x"}]},
            400,
            "invalid_request_error",
        ),
        (
            None,
            {"model": "nope", "max_tokens": 4, "messages": [{"role": "user", "content": "x"}]},
            404,
            "not_found_error",
        ),
        (None, b"{not json", 400, "invalid_request_error"),
    ],
)
def test_errors_are_in_anthropics_shape(
    gateway: Gateway, headers: dict[str, str] | None, body: Any, status: int, kind: str
) -> None:
    key = gateway.new_key()
    sent = {"x-api-key": key, "anthropic-version": "2023-06-01"} if headers is None else headers
    content = body if isinstance(body, bytes) else None
    response = httpx.post(
        f"{gateway.url}/v1/messages",
        headers={"content-type": "application/json", **sent},
        content=content,
        json=None if content is not None else body,
        timeout=30,
    )
    assert response.status_code == status
    error = response.json()
    validate_anthropic_error(error)
    assert error["error"]["type"] == kind
    assert error["request_id"] == response.headers["x-request-id"]


def test_langchain_chat_anthropic_works(gateway: Gateway) -> None:
    langchain_anthropic = pytest.importorskip("langchain_anthropic")
    key = gateway.new_key()
    chat = langchain_anthropic.ChatAnthropic(
        model=MODEL, base_url=gateway.url, api_key=key, max_tokens=8, max_retries=0
    )
    answer = chat.invoke("Say hello.")
    assert isinstance(answer.content, str) and answer.content
    streamed = "".join(str(chunk.content) for chunk in chat.stream("Say hello again."))
    assert streamed
    records = gateway.records(key)
    assert len(records) == 2 and {r.route for r in records} == {"messages"}


@pytest.mark.parametrize("model", sorted(TEST_MODELS))
def test_prompt_tokens_equal_transformers_count_on_every_template(
    gateway: Gateway, tokenizers_dir: Path, model: str
) -> None:
    """Both routes bill what transformers counts for the same conversation through the
    model's own chat template (Mistral's takes no system prompt)."""
    turns = [
        {"role": "user", "content": "Hello, world! Ünïcödé 🚀"},
        {"role": "assistant", "content": "Hi. What do you need?"},
        {"role": "user", "content": "A short answer."},
    ]
    system = None if model == "mistral" else "You are terse."
    reference_messages = ([{"role": "system", "content": system}] if system else []) + turns
    expected_prompt = reference.prompt_tokens(
        tokenizers_dir / TEST_MODELS[model], reference_messages
    )
    key = gateway.new_key()
    message = client(gateway, key).messages.create(
        model=model,
        messages=turns,
        max_tokens=2,
        **({"system": system} if system else {}),  # type: ignore[arg-type]
    )
    response = httpx.post(
        f"{gateway.base_url}/responses",
        headers={"Authorization": f"Bearer {key}"},
        json={
            "model": model,
            "input": turns,
            "max_output_tokens": 2,
            "store": False,
            **({"instructions": system} if system else {}),
        },
        timeout=30,
    ).json()
    assert message.usage.input_tokens == expected_prompt
    assert response["usage"]["input_tokens"] == expected_prompt
    assert sorted(r.prompt_tokens for r in gateway.records(key)) == [expected_prompt] * 2
