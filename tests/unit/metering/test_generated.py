"""What the upstream generated, per choice, and the gateway's count of it."""

from __future__ import annotations

import threading

import pytest
from gateway.metering import Generated, count_all
from gateway.metering.generated import INLINE_COUNT_CHARS

from tests.unit.fakes import FakeTokenizer  # counts words

pytestmark = pytest.mark.anyio


def test_add_keeps_text_reasoning_and_tool_call_parts_per_choice() -> None:
    generated = Generated()
    assert generated.add(0, {"content": "a b", "reasoning_content": "c"})
    call = {"index": 0, "function": {"name": "get", "arguments": '{"x": 1}'}}
    assert generated.add(1, {"tool_calls": [call]})
    assert not generated.add(2, {"role": "assistant", "content": ""})
    assert generated.texts == {0: ["a b", "c"], 1: ["get", '{"x": 1}']}
    assert generated.indexes == [0, 1] and generated.anything


def test_finished_records_reasons_and_vllm_stop_reasons() -> None:
    generated = Generated()
    generated.finished(0, {"finish_reason": None})
    assert not generated.anything
    generated.finished(0, {"finish_reason": "stop", "stop_reason": "END"})  # a stop string
    generated.finished(1, {"finish_reason": "stop", "stop_reason": 128009})  # a stop token id
    generated.finished(2, {"finish_reason": "length", "stop_reason": None})  # not a stop
    generated.finished(3, {"finish_reason": "stop", "stop_reason": True})  # not a token id
    generated.finished(4, {"finish_reason": "stop", "stop_reason": "x" * 5000})  # untrusted
    assert generated.finish_reasons == ["stop", "stop", "length", "stop", "stop"]
    assert generated.texts == {0: ["END"]}
    assert generated.stop_reasons_seen and generated.stop_tokens == 1


async def test_count_adds_one_eos_per_stopped_choice_unless_vllm_said_otherwise() -> None:
    generated = Generated()
    generated.add(0, {"content": "one two"})
    generated.finished(0, {"finish_reason": "stop"})
    generated.add(1, {"content": "three"})
    generated.finished(1, {"finish_reason": "length"})
    assert await generated.count(FakeTokenizer(), counts_eos=True) == 4  # 3 words + 1 EOS
    assert await generated.count(FakeTokenizer(), counts_eos=False) == 3
    generated.finished(1, {"finish_reason": "stop", "stop_reason": None})
    assert await generated.count(FakeTokenizer(), counts_eos=True) == 4  # vLLM's stop token only


async def test_count_takes_a_length_cut_choice_as_max_tokens_ids_whatever_its_text() -> None:
    """vLLM never sends the bytes of a character cut by max_tokens: the text of a "length"
    choice can be shorter than the ids it cost, so those count as the max_tokens sent."""
    generated = Generated()
    generated.add(0, {"content": "one two"})
    generated.finished(0, {"finish_reason": "stop"})
    generated.add(1, {"content": "three"})  # 5 ids, the last ones inside a character
    generated.finished(1, {"finish_reason": "length"})
    generated.finished(2, {"finish_reason": "length"})  # all 5 inside one: no text at all
    assert await generated.count(FakeTokenizer(), counts_eos=True, max_tokens=5) == 13
    # without the max_tokens sent (no surface said it), the texts, as before
    assert await generated.count(FakeTokenizer(), counts_eos=True) == 4


async def test_count_all_counts_long_batches_off_the_event_loop() -> None:
    threads: list[bool] = []

    def count(text: str) -> int:
        threads.append(threading.current_thread() is threading.main_thread())
        return len(text)

    assert await count_all(count, ["ab", "c"]) == [2, 1]
    assert threads == [True, True]
    threads.clear()
    assert await count_all(count, ["x" * INLINE_COUNT_CHARS, "y"]) == [INLINE_COUNT_CHARS, 1]
    assert threads == [False, False]
