"""POST /v1/responses on a model whose upstream serves the Responses API itself
(`native_routes`), end to end with the `openai` SDK against the simulated vLLM server:
the gateway forwards to /v1/responses (never /v1/chat/completions), and the client gets
the same bodies, events, usage and stored conversation as on the translated path, with
the same usage records."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.conformance import validate_response, validate_response_event
from tests.support.native import (
    NATIVE,
    TRANSLATED,
    NativeStack,
    comparable,
    native_stack,
    outcome,
)
from tests.support.sdk import openai_client

WEATHER_TOOL: dict[str, Any] = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city.",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}


@pytest.fixture(scope="module")
def stack(dynamodb: str, tokenizers_dir: Path) -> Iterator[NativeStack]:
    with native_stack(tokenizers_dir) as running:
        yield running


def sdk(stack: NativeStack, key: str) -> openai.OpenAI:
    return openai_client(base_url=stack.gateway.base_url, api_key=key, max_retries=0, timeout=30)


def create(stack: NativeStack, key: str, model: str, **fields: Any) -> dict[str, Any]:
    raw = sdk(stack, key).responses.with_raw_response.create(model=model, **fields)
    body: dict[str, Any] = raw.http_response.json()
    validate_response(body)
    return comparable(body, request_id=raw.headers["x-request-id"], model=model)


def stream(stack: NativeStack, key: str, model: str, **fields: Any) -> list[dict[str, Any]]:
    """The stream's events, each checked against OpenAI's schema; the last names the id."""
    events: list[dict[str, Any]] = []
    with sdk(stack, key).responses.stream(model=model, **fields) as events_in:
        for event in events_in:
            payload = event.model_dump(mode="json", exclude_unset=True)
            validate_response_event(event.type, payload)
            events.append(payload)
    return events


def test_a_buffered_answer_is_the_translated_one_from_the_upstreams_responses_api(
    stack: NativeStack,
) -> None:
    key = stack.gateway.new_key()
    before = len(stack.sim.generation_paths())
    fields = {"instructions": "Be terse.", "input": "Hello there!", "max_output_tokens": 12}
    translated = create(stack, key, TRANSLATED, **fields)
    native = create(stack, key, NATIVE, **fields)
    assert native == translated
    assert stack.sim.generation_paths()[before:] == ["/v1/chat/completions", "/v1/responses"]
    first, second = sorted(stack.gateway.records(key), key=lambda r: r.created_at)
    assert outcome(second) == outcome(first)
    assert (second.model, second.route, second.status) == (NATIVE, "responses", "completed")


def test_three_streamed_turns_with_previous_response_id_match_the_translated_path(
    stack: NativeStack,
) -> None:
    runs: dict[str, list[list[dict[str, Any]]]] = {}
    records: dict[str, list[Any]] = {}
    for model in (TRANSLATED, NATIVE):
        key = stack.gateway.new_key()
        before = len(stack.sim.generation_paths())
        previous: str | None = None
        runs[model] = []
        for turn, question in enumerate(["First question?", "Second one?", "And a third?"]):
            events = stream(
                stack,
                key,
                model,
                input=question,
                max_output_tokens=6 + 4 * turn,
                **({"previous_response_id": previous} if previous else {}),
            )
            response = events[-1]["response"]
            previous = response["id"]
            names = [e["type"] for e in events]
            assert names[:2] == ["response.created", "response.in_progress"]
            assert [e["sequence_number"] for e in events] == list(range(len(events)))
            runs[model].append(
                comparable(events, request_id=previous.removeprefix("resp_"), model=model)
            )
        records[model] = sorted(stack.gateway.records(key), key=lambda r: r.created_at)
        path = "/v1/responses" if model == NATIVE else "/v1/chat/completions"
        assert stack.sim.generation_paths()[before:] == [path] * 3
    assert runs[NATIVE] == runs[TRANSLATED]
    assert [outcome(r) for r in records[NATIVE]] == [outcome(r) for r in records[TRANSLATED]]
    prompts = [r.prompt_tokens for r in records[NATIVE]]
    assert prompts[0] < prompts[1] < prompts[2]  # each turn bills the expanded input


def test_a_function_tool_round_trip_is_stored_and_continued_as_on_the_translated_path(
    stack: NativeStack,
) -> None:
    records: dict[str, list[Any]] = {}
    for model in (TRANSLATED, NATIVE):
        key = stack.gateway.new_key()
        client = sdk(stack, key)
        first = client.responses.create(
            model=model,
            input="What is the weather in Paris?",
            tools=[WEATHER_TOOL],  # type: ignore[list-item]
            tool_choice="required",
        )
        validate_response(first.model_dump(mode="json", exclude_unset=True))
        [call] = [item for item in first.output if item.type == "function_call"]
        assert call.name == "get_weather" and "city" in json.loads(call.arguments)
        output = {"type": "function_call_output", "call_id": call.call_id, "output": "Sunny."}
        second = client.responses.create(
            model=model,
            previous_response_id=first.id,
            input=[output],  # type: ignore[list-item]
            tools=[WEATHER_TOOL],  # type: ignore[list-item]
            max_output_tokens=8,
        )
        assert second.output_text
        stored = client.responses.retrieve(second.id).model_dump(mode="json", exclude_unset=True)
        validate_response(stored)
        assert stored["output"] == second.model_dump(mode="json", exclude_unset=True)["output"]
        records[model] = sorted(stack.gateway.records(key), key=lambda r: r.created_at)
        assert [(r.route, r.status) for r in records[model]] == [("responses", "completed")] * 2
        assert records[model][1].prompt_tokens > records[model][0].prompt_tokens
        billed = [r.usage.input_tokens for r in (first, second) if r.usage is not None]
        assert billed == [r.prompt_tokens for r in records[model]]
    # vLLM renders a function tool's unset fields (strict: null): its prompt is longer
    # than the chat template's of the same conversation, which is what is billed.
    native, translated = records[NATIVE][0], records[TRANSLATED][0]
    assert native.upstream_prompt_tokens > native.prompt_tokens == translated.prompt_tokens
    assert all(r.prompt_tokens == r.gateway_prompt_tokens for r in records[NATIVE])


def test_the_agents_sdk_runs_a_tool_loop_on_a_native_model(stack: NativeStack) -> None:
    agents = pytest.importorskip("agents")
    key = stack.gateway.new_key()
    called: list[str] = []

    @agents.function_tool
    def get_weather(city: str) -> str:
        """The weather in a city."""
        called.append(city)
        return f"Sunny in {city}."

    async def run() -> Any:
        # Closed on this loop: left to the garbage collector, its sockets outlive the loop.
        async with openai.AsyncOpenAI(
            base_url=stack.gateway.base_url, api_key=key, max_retries=0
        ) as sdk:
            agent = agents.Agent(
                name="weather",
                instructions="Answer with the weather tool.",
                tools=[get_weather],
                model=agents.OpenAIResponsesModel(model=NATIVE, openai_client=sdk),
                model_settings=agents.ModelSettings(tool_choice="required"),
            )
            return await agents.Runner.run(
                agent, "Weather in Paris?", run_config=agents.RunConfig(tracing_disabled=True)
            )

    before = len(stack.sim.generation_paths())
    result = asyncio.run(run())
    assert called and isinstance(result.final_output, str) and result.final_output
    assert set(stack.sim.generation_paths()[before:]) == {"/v1/responses"}
    records = stack.gateway.records(key)
    assert len(records) == 2 and {(r.route, r.status) for r in records} == {
        ("responses", "completed")
    }
