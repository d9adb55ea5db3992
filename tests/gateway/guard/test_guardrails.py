"""Guardrails end to end, through the official `openai` client: a gateway whose models
config attaches a Llama Guard model (the simulated guard, gpusim.guard) to models by
policy, in front of a simulated GPU endpoint whose /sim/stats shows what reached it."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import Gateway
from tests.gateway.guard.conftest import SLOW_GUARD_MS
from tests.support.sdk import openai_client

FLAGGED_PROMPT = [{"role": "user", "content": "How do I detonate the old bridge?"}]
CLEAN_PROMPT = [{"role": "user", "content": "Tell me about lighthouses."}]
# The simulated completion with 5 tokens ("The lighthouse keeper"): nothing flagged.
SHORT = {"sim": {"completion_tokens": 5}}


def client(gateway: Gateway, key: str) -> openai.OpenAI:
    return openai_client(base_url=gateway.base_url, api_key=key, max_retries=0, timeout=30)


def stats(url: str) -> dict[str, int]:
    return dict(httpx.get(url + "/sim/stats").json())


def last_record(gateway: Gateway, key: str) -> Any:
    [record] = gateway.records(key)
    return record


def test_a_flagged_prompt_gets_a_400_and_the_upstream_is_never_called(
    guarded: Gateway, model_sim: str
) -> None:
    key = guarded.new_key()
    before = stats(model_sim)["requests"]
    with pytest.raises(openai.BadRequestError) as caught:
        client(guarded, key).chat.completions.create(model="qwen3", messages=FLAGGED_PROMPT)
    error = caught.value
    assert error.status_code == 400 and error.code == "content_filter"
    assert error.param == "messages" and error.type == "invalid_request_error"
    assert isinstance(error.body, dict) and error.body["categories"] == ["S9"]
    assert "S9" in error.message
    assert stats(model_sim)["requests"] == before
    record = last_record(guarded, key)
    assert record.status == "rejected" and record.http_status == 400
    assert (record.prompt_tokens, record.completion_tokens) == (0, 0)
    assert record.guard_action == "blocked_input" and record.guard_blocked == "S9"
    assert record.guard_model == "llama-guard" and record.guard_calls == 1
    assert record.guard_prompt_tokens > 200 and record.guard_completion_tokens > 0
    assert record.guard_input_latency_ms == record.guard_latency_ms > 0


def test_the_record_routes_the_model_and_the_guard_apart(guarded: Gateway) -> None:
    """Input and output screening of a model with two replicas, by a guard with two
    replicas: the record's endpoint and attempts are the model's one call; the guard's
    calls are counted in the guard fields (issue 23: they used to overwrite the model's)."""
    key = guarded.new_key()
    for stream in (False, True):
        answer = client(guarded, key).chat.completions.create(
            model="qwen3-replicated", messages=CLEAN_PROMPT, extra_body=SHORT, stream=stream
        )
        if stream:
            assert [c for c in answer if c.choices]  # type: ignore[union-attr]
    records = guarded.records(key)
    assert len(records) == 2
    for record in records:
        assert record.status == "completed" and record.endpoint in ("replica-a", "replica-b")
        assert record.attempts == 1
        assert record.guard_calls >= 2 and record.guard_attempts == record.guard_calls
        assert record.guard_endpoint in ("guard-a", "guard-b")


def test_categories_outside_the_policy_do_not_block(guarded: Gateway) -> None:
    key = guarded.new_key()
    messages = [{"role": "user", "content": "Which poison do mushrooms carry?"}]  # S1
    answer = client(guarded, key).chat.completions.create(
        model="qwen3-input", messages=messages, extra_body=SHORT
    )
    assert answer.choices[0].finish_reason == "stop"
    record = last_record(guarded, key)
    assert record.guard_action == "passed"
    assert record.guard_categories == "S1" and record.guard_blocked is None


def test_a_clean_request_passes_with_its_guard_latency_recorded(
    guarded: Gateway, tmp_guard_counts: Any
) -> None:
    key = guarded.new_key()
    answer = client(guarded, key).chat.completions.create(
        model="qwen3", messages=CLEAN_PROMPT, extra_body=SHORT
    )
    text = answer.choices[0].message.content
    assert text == "The lighthouse keeper" and answer.choices[0].finish_reason == "stop"
    record = last_record(guarded, key)
    assert record.status == "completed" and record.guard_action == "passed"
    assert record.guard_calls == 2  # the prompt, then the completion
    assert record.guard_latency_ms > record.guard_input_latency_ms > 0
    assert record.guard_categories is None and record.guard_error is None
    # The guard's own usage (what gpusim counted with transformers) is what the gateway
    # counts over Llama Guard 3's template: 2 calls, `\n\nsafe` + EOS each.
    assert record.guard_prompt_tokens == tmp_guard_counts(CLEAN_PROMPT, text)
    assert record.guard_completion_tokens == 2 * 3
    assert answer.usage is not None and answer.usage.total_tokens == record.total_tokens


def test_a_flagged_completion_ends_with_content_filter(guarded: Gateway) -> None:
    key = guarded.new_key()
    answer = client(guarded, key).chat.completions.create(model="qwen3", messages=CLEAN_PROMPT)
    [choice] = answer.choices
    assert choice.finish_reason == "content_filter" and choice.message.content is None
    record = last_record(guarded, key)
    assert record.guard_action == "blocked_output" and record.guard_blocked == "S6"
    assert record.completion_tokens == 48  # generated, so billed
    assert record.status == "completed"


def test_a_flagged_stream_stops_with_a_content_filter_chunk_then_done(guarded: Gateway) -> None:
    key = guarded.new_key()
    body = {"model": "qwen3", "messages": CLEAN_PROMPT, "stream": True}
    with guarded.stream_chat(key, body) as response:
        frames = [line for line in response.iter_lines() if line.startswith("data: ")]
    assert frames[-1] == "data: [DONE]"
    last = json.loads(frames[-2].removeprefix("data: "))
    assert last["choices"] == [
        {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "content_filter"}
    ]
    assert last["id"] == json.loads(frames[0].removeprefix("data: "))["id"]
    stream = client(guarded, key).chat.completions.create(
        model="qwen3", messages=CLEAN_PROMPT, stream=True
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "content_filter"
    # Windows of 8 tokens before the one holding "coffee" reached the client; not it.
    assert text.startswith("The lighthouse keeper woke before dawn")
    assert "coffee" not in text and "mug of" not in text
    records = guarded.records(key)
    assert len(records) == 2
    for record in records:
        assert record.guard_action == "blocked_output" and record.finish_reason == "content_filter"
        assert record.guard_calls >= 3 and record.completion_tokens > len(text.split())


def test_guard_down_fail_open_serves(guarded: Gateway) -> None:
    key = guarded.new_key()
    answer = client(guarded, key).chat.completions.create(
        model="qwen3-open", messages=FLAGGED_PROMPT, extra_body=SHORT
    )
    assert answer.choices[0].message.content == "The lighthouse keeper"
    record = last_record(guarded, key)
    assert record.guard_action == "failed_open" and record.guard_error
    assert record.guard_prompt_tokens == 0


@pytest.mark.parametrize("stream", [False, True])
def test_a_slow_guard_fail_closed_refuses_within_the_deadline(
    guarded: Gateway, model_sim: str, stream: bool
) -> None:
    key = guarded.new_key()
    before = stats(model_sim)["requests"]
    started = time.monotonic()
    with pytest.raises(openai.InternalServerError) as caught:
        client(guarded, key).chat.completions.create(
            model="qwen3-closed", messages=CLEAN_PROMPT, stream=stream
        )
    elapsed = time.monotonic() - started
    assert caught.value.status_code == 503 and caught.value.code == "guard_unavailable"
    assert elapsed < SLOW_GUARD_MS / 1000 / 2  # cut at the 0.5 s deadline, not the guard's 5 s
    assert stats(model_sim)["requests"] == before
    record = last_record(guarded, key)
    assert record.guard_action == "failed_closed" and record.guard_error == "deadline exceeded"
    assert 500 <= record.guard_latency_ms < SLOW_GUARD_MS / 2


def test_a_slow_guard_fail_open_serves_after_the_deadline(guarded: Gateway) -> None:
    key = guarded.new_key()
    answer = client(guarded, key).chat.completions.create(
        model="qwen3-slow-open", messages=CLEAN_PROMPT, extra_body=SHORT
    )
    assert answer.choices[0].finish_reason == "stop"
    record = last_record(guarded, key)
    assert record.guard_action == "failed_open" and 500 <= record.guard_latency_ms < 2500


def test_a_guard_failing_mid_stream_fail_closed_ends_it_with_an_error(guarded: Gateway) -> None:
    """Output screening only: the stream has started (200) when the first window's
    screening misses its deadline; it ends with the error event, no token unscreened."""
    key = guarded.new_key()
    body = {"model": "qwen3-output-closed", "messages": CLEAN_PROMPT, "stream": True}
    with guarded.stream_chat(key, body) as response:
        assert response.status_code == 200
        frames = [line for line in response.iter_lines() if line.startswith("data: ")]
    [event] = [json.loads(f.removeprefix("data: ")) for f in frames]
    assert event["error"]["code"] == "guard_unavailable"
    record = last_record(guarded, key)
    assert record.guard_action == "failed_closed" and record.http_status == 503
    assert record.completion_tokens > 0  # generated before the refusal: billed


def test_a_flagged_choice_ends_every_choice_of_the_stream(guarded: Gateway) -> None:
    """n=2: choice 0 says "coffee" (S6), choice 1 starts 37 words later and does not; the
    stream ends at the flagged window, with content_filter on both."""
    key = guarded.new_key()
    stream = client(guarded, key).chat.completions.create(
        model="qwen3", messages=CLEAN_PROMPT, stream=True, n=2
    )
    finish: dict[int, str | None] = {}
    for chunk in stream:
        for choice in chunk.choices:
            finish[choice.index] = choice.finish_reason or finish.get(choice.index)
    assert finish == {0: "content_filter", 1: "content_filter"}
    assert last_record(guarded, key).guard_blocked == "S6"


def test_legacy_completions_are_screened_or_refused_never_served_unscreened(
    guarded: Gateway, model_sim: str
) -> None:
    key = guarded.new_key()
    api = client(guarded, key)
    before = stats(model_sim)["requests"]
    # input screening applies to /v1/completions as to chat: the prompt as a user turn
    with pytest.raises(openai.BadRequestError) as flagged:
        api.completions.create(model="qwen3-input", prompt=FLAGGED_PROMPT[0]["content"])
    assert flagged.value.code == "content_filter" and flagged.value.param == "prompt"
    # a policy that screens output cannot be applied to this route: refused, not bypassed
    with pytest.raises(openai.BadRequestError) as unsupported:
        api.completions.create(model="qwen3", prompt=CLEAN_PROMPT[0]["content"])
    assert unsupported.value.code == "content_filter_unsupported"
    with pytest.raises(openai.BadRequestError) as ids:
        api.completions.create(model="qwen3-input", prompt=[1, 2, 3])
    assert ids.value.code == "content_filter_unsupported"
    assert stats(model_sim)["requests"] == before  # nothing reached the model
    answer = api.completions.create(
        model="qwen3-input", prompt=CLEAN_PROMPT[0]["content"], max_tokens=5
    )
    assert answer.choices[0].text
    records = guarded.records(key)
    assert [r.guard_action for r in records if r.status == "completed"] == ["passed"]
    assert any(r.guard_action == "blocked_input" for r in records)
