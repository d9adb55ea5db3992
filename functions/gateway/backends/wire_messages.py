"""Anthropic's Messages API answers from an upstream that serves /v1/messages (vLLM), read
as chat (backends/native.py says how): the MESSAGES wire route."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from gateway.backends import native
from gateway.backends.wire import WireRoute

_FINISH = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


def _usage(usage: Any) -> dict[str, Any] | None:
    """vLLM reports `input_tokens` without the cached ones, `cache_read_input_tokens`
    apart; without `input_tokens` (Anthropic's own message_delta) there are no figures."""
    if not isinstance(usage, Mapping) or "input_tokens" not in usage:
        return None
    prompt, cached = usage.get("input_tokens"), usage.get("cache_read_input_tokens")
    if isinstance(prompt, int) and isinstance(cached, int):
        prompt += cached
    return native.chat_usage(prompt, usage.get("output_tokens"), cached)


def _finish(stop_reason: Any, what: str) -> str | None:
    if stop_reason is None:
        return None
    finish = _FINISH.get(stop_reason) if isinstance(stop_reason, str) else None
    if finish is None:
        raise native.malformed(what)
    return finish


def _choice(finish: str | None, data: Mapping[str, Any]) -> dict[str, Any]:
    """Chat's choice fields for a stop; a matched stop sequence is vLLM's `stop_reason`."""
    choice: dict[str, Any] = {"index": 0, "finish_reason": finish}
    sequence = data.get("stop_sequence")
    if data.get("stop_reason") == "stop_sequence" and isinstance(sequence, str):
        choice["stop_reason"] = sequence
    return choice


def _tool_call(block: Mapping[str, Any]) -> dict[str, Any]:
    arguments = block.get("input", {})
    if not isinstance(arguments, dict):
        raise native.malformed("body")
    return native.tool_call(block.get("id"), block.get("name"), orjson.dumps(arguments).decode())


def parse_message(raw: bytes) -> dict[str, Any]:
    """A buffered Anthropic `message` as a chat.completion dict."""
    data = native.json_object(raw, "body")
    if data.get("type") == "error":
        raise native.failed(data.get("error"))
    blocks = data.get("content")
    if data.get("type") != "message" or not isinstance(blocks, list):
        raise native.malformed("body")
    if not all(isinstance(block, dict) for block in blocks):
        raise native.malformed("body")
    texts = [native.text(b.get("text"), "body") for b in blocks if b.get("type") == "text"]
    reasoning = [
        native.text(b.get("thinking"), "body") for b in blocks if b.get("type") == "thinking"
    ]
    calls = [_tool_call(b) for b in blocks if b.get("type") == "tool_use"]
    choice = _choice(_finish(data.get("stop_reason"), "body"), data)
    choice["message"] = native.message(texts, reasoning, calls)
    return native.completion(data.get("id"), choice, _usage(data.get("usage")))


def _block_start(event: Mapping[str, Any]) -> dict[str, Any]:
    block, number = event.get("content_block"), native.index(event.get("index"), "event")
    if not isinstance(block, dict):
        raise native.malformed("event")
    if block.get("type") == "tool_use":
        call_id = native.text(block.get("id"), "event")
        fragment = native.call(number, call_id=call_id, name=block.get("name"))
        return native.delta({"tool_calls": [fragment]})
    if block.get("type") == "text" and (text := native.text(block.get("text", ""), "event")):
        return native.delta({"content": text})
    return native.nothing()


def _block_delta(event: Mapping[str, Any]) -> dict[str, Any]:
    piece, number = event.get("delta"), native.index(event.get("index"), "event")
    if not isinstance(piece, dict):
        raise native.malformed("event")
    kind = piece.get("type")
    if kind == "text_delta":
        return native.delta({"content": native.text(piece.get("text"), "event")})
    if kind == "thinking_delta":
        return native.delta({"reasoning_content": native.text(piece.get("thinking"), "event")})
    if kind == "input_json_delta":
        arguments = native.text(piece.get("partial_json"), "event")
        return native.delta({"tool_calls": [native.call(number, arguments=arguments)]})
    return native.nothing()


def _message_delta(event: Mapping[str, Any]) -> dict[str, Any]:
    stop = event.get("delta")
    if not isinstance(stop, dict):
        raise native.malformed("event")
    choice = _choice(_finish(stop.get("stop_reason"), "event") or "stop", stop)
    chunk: dict[str, Any] = {"choices": [{**choice, "delta": {}}]}
    if (usage := _usage(event.get("usage"))) is not None:
        chunk["usage"] = usage
    return chunk


def _error(event: Mapping[str, Any]) -> dict[str, Any]:
    raise native.failed(event.get("error"))


_EVENTS: dict[str, native.EventReader] = {
    "error": _error,
    "content_block_start": _block_start,
    "content_block_delta": _block_delta,
    "message_delta": _message_delta,
}


def parse_message_event(payload: bytes) -> dict[str, Any]:
    """One Anthropic stream event as a chat.completion.chunk dict (message_start,
    content_block_stop, message_stop and ping carry nothing)."""
    return native.read_event(payload, _EVENTS)


MESSAGES = WireRoute("messages", "/messages", parse_message, parse_message_event)
