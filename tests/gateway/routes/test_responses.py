"""POST /v1/responses, GET and DELETE /v1/responses/{id} through the gateway, end to end
(moto's DynamoDB, the simulated GPU server, the gateway, each on 127.0.0.1), with the
`openai` SDK and the OpenAI Agents SDK; every body and event checked against OpenAI's
published schema, prompt counts against transformers' own count of the conversation."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.conformance import validate_response, validate_response_event
from tests.conftest import TEST_MODELS, Gateway
from tests.support import reference
from tests.support.sdk import openai_client

MODEL = "qwen3"
WEATHER_TOOL = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city.",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}


def client(gateway: Gateway, key: str) -> openai.OpenAI:
    return openai_client(base_url=gateway.base_url, api_key=key, max_retries=0, timeout=30)


def expected(tokenizers_dir: Path, messages: list[dict[str, Any]]) -> int:
    return reference.prompt_tokens(tokenizers_dir / TEST_MODELS[MODEL], messages)


def assistant_text(response: Any) -> str:
    return "".join(
        part["text"]
        for item in response["output"]
        if item["type"] == "message"
        for part in item["content"]
    )


def test_create_is_counted_as_chat_recorded_and_stored(
    gateway: Gateway, tokenizers_dir: Path
) -> None:
    key = gateway.new_key()
    raw = client(gateway, key).responses.with_raw_response.create(
        model=MODEL, instructions="Be terse.", input="Hello there!", max_output_tokens=9
    )
    body = raw.http_response.json()
    validate_response(body)
    request_id = raw.headers["x-request-id"]
    assert body["id"] == f"resp_{request_id}"
    assert body["status"] == "incomplete"
    assert body["incomplete_details"] == {"reason": "max_output_tokens"}
    prompt = expected(
        tokenizers_dir,
        [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "Hello there!"}],
    )
    assert body["usage"]["input_tokens"] == prompt
    assert body["usage"]["output_tokens"] == 9

    [record] = gateway.records(key)
    assert (record.route, record.status, record.request_id) == (
        "responses",
        "completed",
        request_id,
    )
    assert (record.prompt_tokens, record.completion_tokens) == (prompt, 9)

    stored = client(gateway, key).responses.retrieve(body["id"])
    assert stored.id == body["id"] and stored.output_text == assistant_text(body)
    validate_response(
        httpx.get(
            f"{gateway.base_url}/responses/{body['id']}", headers={"Authorization": f"Bearer {key}"}
        ).json()
    )
    assert len(gateway.records(key)) == 1  # reading a stored response is not metered


def test_stream_with_previous_response_id_bills_the_expanded_input_each_turn(
    gateway: Gateway, tokenizers_dir: Path
) -> None:
    key = gateway.new_key()
    sdk = client(gateway, key)
    conversation: list[dict[str, Any]] = []
    previous: str | None = None
    for turn, question in enumerate(["First question?", "Second one?", "And a third?"]):
        conversation.append({"role": "user", "content": question})
        names: list[str] = []
        last: Any = None
        with sdk.responses.stream(
            model=MODEL,
            input=question,
            max_output_tokens=6 + turn,
            **({"previous_response_id": previous} if previous else {}),
        ) as stream:
            for event in stream:
                payload = event.model_dump(mode="json", exclude_unset=True)
                validate_response_event(event.type, payload)
                names.append(event.type)
                last = event
        # max_output_tokens ends each turn: response.incomplete (which the SDK's
        # get_final_response does not take), with the whole response.
        final = last.response.model_dump(mode="json", exclude_unset=True)
        assert names[:2] == ["response.created", "response.in_progress"]
        assert names[-1] == "response.incomplete"
        validate_response(final)
        assert final["usage"]["input_tokens"] == expected(tokenizers_dir, conversation)
        assert final["usage"]["output_tokens"] == 6 + turn
        conversation.append({"role": "assistant", "content": assistant_text(final)})
        previous = final["id"]

    records = sorted(gateway.records(key), key=lambda r: r.created_at)
    assert [r.route for r in records] == ["responses"] * 3
    assert all(r.stream and r.status == "completed" for r in records)
    prompts = [r.prompt_tokens for r in records]
    assert prompts[0] < prompts[1] < prompts[2]  # each turn bills the whole conversation


def test_a_function_tool_round_trip(gateway: Gateway) -> None:
    key = gateway.new_key()
    sdk = client(gateway, key)
    first = sdk.responses.create(
        model=MODEL,
        input="What is the weather in Paris?",
        tools=[WEATHER_TOOL],  # type: ignore[list-item]
        tool_choice="required",
    )
    validate_response(first.model_dump(mode="json", exclude_unset=True))
    [call] = [item for item in first.output if item.type == "function_call"]
    assert call.name == "get_weather" and "city" in json.loads(call.arguments)
    second = sdk.responses.create(
        model=MODEL,
        previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "Sunny."}],
        tools=[WEATHER_TOOL],  # type: ignore[list-item]
        max_output_tokens=8,
    )
    validate_response(second.model_dump(mode="json", exclude_unset=True))
    assert second.output_text
    assert [r.route for r in gateway.records(key)] == ["responses", "responses"]


def test_another_owners_response_is_a_404_like_an_unknown_one(gateway: Gateway) -> None:
    mine = gateway.new_key(owner="alice")
    theirs = gateway.new_key(owner="mallory")
    same_owner = gateway.new_key(owner="alice")
    created = client(gateway, mine).responses.create(
        model=MODEL, input="A secret.", max_output_tokens=4
    )

    for attempt in (created.id, "resp_unknown"):
        with pytest.raises(openai.NotFoundError) as got:
            client(gateway, theirs).responses.retrieve(attempt)
        assert got.value.status_code == 404
        with pytest.raises(openai.NotFoundError) as followed:
            client(gateway, theirs).responses.create(
                model=MODEL, input="Continue.", previous_response_id=attempt
            )
        assert followed.value.body["code"] == "previous_response_not_found"  # type: ignore[index]
        with pytest.raises(openai.NotFoundError):
            client(gateway, theirs).responses.delete(attempt)
    # The refused follow-ups are recorded (one record per request), never billed.
    refused = gateway.records(theirs)
    assert len(refused) == 2 and all(r.status != "completed" for r in refused)
    assert all(r.prompt_tokens == 0 for r in refused)

    # Another key of the same owner reads and continues it; the owner deletes it.
    assert client(gateway, same_owner).responses.retrieve(created.id).id == created.id
    client(gateway, same_owner).responses.delete(created.id)
    with pytest.raises(openai.NotFoundError):
        client(gateway, mine).responses.retrieve(created.id)


def test_store_false_keeps_nothing(gateway: Gateway) -> None:
    key = gateway.new_key()
    created = client(gateway, key).responses.create(
        model=MODEL, input="Forget this.", store=False, max_output_tokens=4
    )
    assert created.store is False
    with pytest.raises(openai.NotFoundError):
        client(gateway, key).responses.retrieve(created.id)


def test_the_agents_sdk_runs_a_tool_loop_to_a_final_answer(gateway: Gateway) -> None:
    agents = pytest.importorskip("agents")
    key = gateway.new_key()
    called: list[str] = []

    @agents.function_tool
    def get_weather(city: str) -> str:
        """The weather in a city."""
        called.append(city)
        return f"Sunny in {city}."

    async def run() -> Any:
        # Closed on this loop: left to the garbage collector, its sockets outlive the loop.
        async with openai.AsyncOpenAI(base_url=gateway.base_url, api_key=key, max_retries=0) as sdk:
            agent = agents.Agent(
                name="weather",
                instructions="Answer with the weather tool.",
                tools=[get_weather],
                model=agents.OpenAIResponsesModel(model=MODEL, openai_client=sdk),
                # The first turn must call the tool; the SDK resets tool_choice after it.
                model_settings=agents.ModelSettings(tool_choice="required"),
            )
            return await agents.Runner.run(
                agent, "Weather in Paris?", run_config=agents.RunConfig(tracing_disabled=True)
            )

    result = asyncio.run(run())
    assert called and isinstance(result.final_output, str) and result.final_output
    records = gateway.records(key)
    assert len(records) == 2 and {r.route for r in records} == {"responses"}
    assert all(r.status == "completed" for r in records)
