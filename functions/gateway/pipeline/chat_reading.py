"""Reading an upstream's chat completion and its chunks, as the surfaces that translate
chat into another API (the Responses API, Anthropic's Messages) all must: defensively,
since a model server can send anything, and a malformed piece adds nothing."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def first_choice(completion: Mapping[str, Any]) -> Mapping[str, Any]:
    """A chat completion's (or chunk's) one choice ({} when the body has none, or a
    malformed one)."""
    choices = completion.get("choices")
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        return choices[0]
    return {}


def chunk_delta(chunk: Mapping[str, Any]) -> tuple[Mapping[str, Any], Mapping[str, Any]] | None:
    """A chunk's one choice and its delta ({} when malformed); None for a chunk without
    a choice (the usage chunk)."""
    choice = first_choice(chunk)
    if not choice:
        return None
    delta = choice.get("delta")
    return choice, delta if isinstance(delta, dict) else {}


def reasoning_of(message: Mapping[str, Any]) -> str:
    """A chat message's (or delta's) reasoning: vLLM's `reasoning`, or the older
    `reasoning_content`."""
    for name in ("reasoning", "reasoning_content"):
        value = message.get(name)
        if isinstance(value, str) and value:
            return value
    return ""


def call_function(call: Mapping[str, Any]) -> tuple[Mapping[str, Any], int]:
    """A streamed tool call's `function` ({} when absent) and its chat index (0 when
    absent: a server streaming one call may leave it out)."""
    function = call.get("function")
    index = call.get("index")
    return (function if isinstance(function, dict) else {}), (
        index if isinstance(index, int) else 0
    )


def argument_piece(function: Mapping[str, Any]) -> str:
    """The piece of a tool call's arguments a delta carries ("" when none)."""
    piece = function.get("arguments")
    return piece if isinstance(piece, str) else ""
