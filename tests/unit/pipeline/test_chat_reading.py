"""Reading an upstream's chat completion and chunks: what a model server may send,
malformed pieces included, reads as nothing rather than failing."""

from __future__ import annotations

from typing import Any

import pytest
from gateway.pipeline.chat_reading import (
    argument_piece,
    call_function,
    chunk_delta,
    first_choice,
    reasoning_of,
)


@pytest.mark.parametrize(
    "body", [{}, {"choices": []}, {"choices": None}, {"choices": ["x"]}, {"choices": [{}]}]
)
def test_a_body_without_a_choice_has_none(body: dict[str, Any]) -> None:
    assert first_choice(body) == {}
    assert chunk_delta(body) is None  # the usage chunk, or a malformed one


def test_a_chunk_gives_its_choice_and_delta() -> None:
    choice = {"index": 0, "delta": {"content": "Hi"}, "finish_reason": None}
    assert chunk_delta({"choices": [choice]}) == (choice, {"content": "Hi"})
    malformed = {"index": 0, "delta": "Hi", "finish_reason": "stop"}
    assert chunk_delta({"choices": [malformed]}) == (malformed, {})


def test_reasoning_is_vllms_field_or_the_older_one() -> None:
    assert reasoning_of({"reasoning": "think", "reasoning_content": "old"}) == "think"
    assert reasoning_of({"reasoning": "", "reasoning_content": "old"}) == "old"
    assert reasoning_of({"reasoning": 3}) == ""
    assert reasoning_of({}) == ""


def test_a_streamed_call_gives_its_function_and_index() -> None:
    call = {"index": 2, "id": "c", "function": {"name": "f", "arguments": '{"a"'}}
    function, index = call_function(call)
    assert (function, index) == ({"name": "f", "arguments": '{"a"'}, 2)
    assert argument_piece(function) == '{"a"'
    assert call_function({"function": "f", "index": "1"}) == ({}, 0)
    assert argument_piece({"arguments": None}) == ""
