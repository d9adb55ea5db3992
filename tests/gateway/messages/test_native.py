"""POST /v1/messages on a model whose upstream serves Anthropic's Messages API itself
(`native_routes`), end to end with the `anthropic` SDK against the simulated vLLM server:
the gateway forwards to /v1/messages (never /v1/chat/completions), and the client gets the
same messages, events and usage as on the translated path, with the same usage records."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import pytest

from tests.conformance import validate_message, validate_message_event
from tests.support.native import (
    NATIVE,
    TRANSLATED,
    NativeStack,
    comparable,
    native_stack,
    outcome,
)
from tests.support.sdk import anthropic_client

WEATHER_TOOL: dict[str, Any] = {
    "name": "get_weather",
    "description": "The weather in a city.",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}
QUESTION = {"role": "user", "content": "What is the weather in Paris?"}


@pytest.fixture(scope="module")
def stack(dynamodb: str, tokenizers_dir: Path) -> Iterator[NativeStack]:
    with native_stack(tokenizers_dir) as running:
        yield running


def sdk(stack: NativeStack, key: str) -> anthropic.Anthropic:
    return anthropic_client(base_url=stack.gateway.url, api_key=key, max_retries=0, timeout=30)


def test_a_buffered_message_is_the_translated_one_from_the_upstreams_messages_api(
    stack: NativeStack,
) -> None:
    key = stack.gateway.new_key()
    before = len(stack.sim.generation_paths())
    bodies = []
    for model in (TRANSLATED, NATIVE):
        raw = sdk(stack, key).messages.with_raw_response.create(
            model=model,
            system="Be terse.",
            messages=[{"role": "user", "content": "Hello there!"}],
            max_tokens=12,
        )
        body = raw.http_response.json()
        validate_message(body)
        bodies.append(comparable(body, request_id=raw.headers["x-request-id"], model=model))
    assert bodies[1] == bodies[0]
    assert stack.sim.generation_paths()[before:] == ["/v1/chat/completions", "/v1/messages"]
    first, second = sorted(stack.gateway.records(key), key=lambda r: r.created_at)
    assert outcome(second) == outcome(first)
    assert (second.model, second.route) == (NATIVE, "messages")


def stream_tool_use(stack: NativeStack, key: str, model: str) -> tuple[list[Any], Any]:
    """A streamed turn that must call the tool: its events (checked against Anthropic's
    types) and the SDK's final message."""
    events: list[Any] = []
    with sdk(stack, key).messages.stream(
        model=model,
        messages=[QUESTION],  # type: ignore[list-item]
        tools=[WEATHER_TOOL],  # type: ignore[list-item]
        tool_choice={"type": "any"},
        max_tokens=200,
    ) as stream:
        for event in stream:
            if event.type in ("text", "input_json", "citation", "thinking", "signature"):
                continue  # the SDK's own derived events
            payload = event.model_dump(mode="json")
            validate_message_event(event.type, payload)
            events.append(payload)
        final = stream.get_final_message()
    validate_message(final.model_dump(mode="json"))
    return events, final


def test_a_streamed_tool_use_round_trip_matches_the_translated_path(stack: NativeStack) -> None:
    outcomes: dict[str, list[dict[str, Any]]] = {}
    shapes: dict[str, list[Any]] = {}
    for model in (TRANSLATED, NATIVE):
        key = stack.gateway.new_key()
        before = len(stack.sim.generation_paths())
        events, first = stream_tool_use(stack, key, model)
        assert first.stop_reason == "tool_use"
        [use] = [block for block in first.content if block.type == "tool_use"]
        assert use.name == "get_weather" and "city" in use.input  # type: ignore[operator]
        answer = sdk(stack, key).messages.create(
            model=model,
            messages=[
                QUESTION,  # type: ignore[list-item]
                {"role": "assistant", "content": [b.model_dump() for b in first.content]},  # type: ignore[misc]
                {
                    "role": "user",
                    "content": [
                        {"type": "tool_result", "tool_use_id": use.id, "content": "Sunny."}
                    ],
                },
            ],
            tools=[WEATHER_TOOL],  # type: ignore[list-item]
            max_tokens=8,
        )
        validate_message(answer.model_dump(mode="json"))
        assert answer.content and answer.content[0].type == "text"
        path = "/v1/messages" if model == NATIVE else "/v1/chat/completions"
        assert stack.sim.generation_paths()[before:] == [path, path]
        records = sorted(stack.gateway.records(key), key=lambda r: r.created_at)
        assert [(r.route, r.stream, r.status) for r in records] == [
            ("messages", True, "completed"),
            ("messages", False, "completed"),
        ]
        assert first.usage.input_tokens == records[0].prompt_tokens
        assert answer.usage.input_tokens == records[1].prompt_tokens > records[0].prompt_tokens
        outcomes[model] = [outcome(r) for r in records]
        # The event sequence, without what the model generated (the text, the arguments).
        shapes[model] = [
            (e["type"], e.get("index"), (e.get("content_block") or {}).get("type")) for e in events
        ]
    assert shapes[NATIVE] == shapes[TRANSLATED]
    # The same conversation: the same first turn's record, billed by the chat template's
    # count; only the upstream's own prompt figure differs (vLLM's Messages serving
    # renders the tool with the fields it leaves unset as nulls).
    native, translated = outcomes[NATIVE][0], outcomes[TRANSLATED][0]
    assert native.pop("upstream_prompt_tokens") > translated.pop("upstream_prompt_tokens")
    assert native == translated
