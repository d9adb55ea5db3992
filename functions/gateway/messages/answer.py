"""A chat completion as a `message` (Anthropic's `Message`), the way vLLM's Anthropic
serving converts it (vllm/entrypoints/anthropic/serving.py); the stream's events are
stream.py.

Usage follows Anthropic's arithmetic: `input_tokens` are the prompt tokens not read from
the cache, `cache_read_input_tokens` the cached ones (the upstream's
`prompt_tokens_details.cached_tokens`), so their sum is the billed prompt.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from gateway.messages.protocol import MessagesRequest
from gateway.pipeline.chat_reading import first_choice, reasoning_of

STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use"}


def usage_of(usage: Mapping[str, Any] | None) -> dict[str, Any]:
    """A chat `usage` (the billed figures) in Anthropic's shape."""
    usage = usage or {}
    details = usage.get("prompt_tokens_details") or {}
    prompt = int(usage.get("prompt_tokens") or 0)
    cached = min(int(details.get("cached_tokens") or 0), prompt)
    return {
        "input_tokens": prompt - cached,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": cached,
        "output_tokens": int(usage.get("completion_tokens") or 0),
    }


def stop_of(
    finish_reason: Any, stop_reason: Any, request: MessagesRequest, *, tool_use: bool
) -> tuple[str, str | None]:
    """Anthropic's (stop_reason, stop_sequence) for a chat finish_reason and vLLM's
    `stop_reason` (the matched stop string, when one ended the generation). An unknown
    finish_reason is a natural end."""
    if tool_use:  # a named tool_choice finishes with `stop`, as OpenAI's does
        return "tool_use", None
    if (
        finish_reason == "stop"
        and isinstance(stop_reason, str)
        and stop_reason in (request.stop_sequences or ())
    ):
        return "stop_sequence", stop_reason
    if finish_reason == "content_filter":
        return "refusal", None
    return STOP_REASONS.get(finish_reason, "end_turn"), None


def tool_use_block(call: Mapping[str, Any], fallback_id: str) -> dict[str, Any]:
    function = call.get("function") if isinstance(call.get("function"), dict) else {}
    assert isinstance(function, dict)
    return {
        "type": "tool_use",
        "id": str(call.get("id") or fallback_id),
        "name": str(function.get("name") or ""),
        "input": parse_arguments(function.get("arguments")),
    }


def parse_arguments(arguments: Any) -> dict[str, Any]:
    """A tool call's arguments as the object Anthropic's `input` is: the model's JSON text
    parsed, {} when it is not a JSON object (a model can write anything)."""
    if not isinstance(arguments, str) or not arguments:
        return {}
    try:
        value = json.loads(arguments)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def signature(message_id: str, index: int) -> str:
    """A thinking block's `signature`. Anthropic's is a cryptographic seal the API checks
    when the block is sent back; a self-hosted model has none, so this is an opaque
    placeholder (vLLM sends a random one), and thinking sent back is taken as it is."""
    return f"{message_id}.{index}"


def thinking_block(text: str, *, signature: str) -> dict[str, Any]:
    return {"type": "thinking", "thinking": text, "signature": signature}


def message_from_chat(
    completion: Mapping[str, Any],
    *,
    message_id: str,
    model: str,
    request: MessagesRequest,
    usage: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """The `message` of a buffered chat completion. `usage` is the billed chat usage."""
    choice = first_choice(completion)
    message = choice.get("message")
    if not isinstance(message, dict):
        message = {}
    content: list[dict[str, Any]] = []
    if thought := reasoning_of(message):
        content.append(thinking_block(thought, signature=signature(message_id, 0)))
    if isinstance(text := message.get("content"), str) and text:
        content.append({"type": "text", "text": text})
    calls = message.get("tool_calls")
    for index, call in enumerate(calls if isinstance(calls, list) else []):
        if isinstance(call, dict):
            content.append(tool_use_block(call, f"toolu_{message_id}_{index}"))
    stop_reason, stop_sequence = stop_of(
        choice.get("finish_reason") or "stop",
        choice.get("stop_reason"),
        request,
        tool_use=any(block["type"] == "tool_use" for block in content),
    )
    return {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "content": content,
        "model": model,
        "stop_reason": stop_reason,
        "stop_sequence": stop_sequence,
        "usage": usage_of(usage),
    }
