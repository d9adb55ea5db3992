"""The Responses API's answers from an upstream that serves /v1/responses (vLLM), read as
chat (backends/native.py says how): the RESPONSES wire route."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gateway.backends import native
from gateway.backends.wire import WireRoute


def _usage(usage: Any) -> dict[str, Any] | None:
    if not isinstance(usage, Mapping):
        return None
    details = usage.get("input_tokens_details")
    cached = details.get("cached_tokens") if isinstance(details, Mapping) else None
    return native.chat_usage(usage.get("input_tokens"), usage.get("output_tokens"), cached)


def _finish(response: Mapping[str, Any]) -> str:
    """Chat's finish reason for a finished response (a failed one is an UpstreamError)."""
    status = response.get("status")
    if status == "incomplete":
        details = response.get("incomplete_details")
        reason = details.get("reason") if isinstance(details, Mapping) else None
        return "content_filter" if reason == "content_filter" else "length"
    if status not in (None, "completed"):
        raise native.failed(response.get("error"))
    output = response.get("output")
    calls = isinstance(output, list) and any(
        isinstance(item, Mapping) and item.get("type") == "function_call" for item in output
    )
    return "tool_calls" if calls else "stop"


def _parts(item: Mapping[str, Any], kind: str | None) -> list[str]:
    parts = item.get("content") or []
    if not isinstance(parts, list) or not all(isinstance(p, dict) for p in parts):
        raise native.malformed("body")
    return [native.text(p.get("text"), "body") for p in parts if kind in (None, p.get("type"))]


def _message(output: Any) -> dict[str, Any]:
    """A Responses `output` list as a chat message."""
    if not isinstance(output, list) or not all(isinstance(item, dict) for item in output):
        raise native.malformed("body")
    texts: list[str] = []
    reasoning: list[str] = []
    calls: list[dict[str, Any]] = []
    for item in output:
        kind = item.get("type")
        if kind == "message":
            texts += _parts(item, "output_text")
        elif kind == "reasoning":
            reasoning += _parts(item, None)
        elif kind == "function_call":
            calls.append(
                native.tool_call(item.get("call_id"), item.get("name"), item.get("arguments", ""))
            )
    return native.message(texts, reasoning, calls)


def parse_response(raw: bytes) -> dict[str, Any]:
    """A buffered Responses `response` as a chat.completion dict."""
    data = native.json_object(raw, "body")
    if data.get("object") != "response":
        raise native.malformed("body")
    choice = {"index": 0, "message": _message(data.get("output")), "finish_reason": _finish(data)}
    return native.completion(data.get("id"), choice, _usage(data.get("usage")))


def _text_delta(event: Mapping[str, Any]) -> dict[str, Any]:
    return native.delta({"content": native.text(event.get("delta"), "event")})


def _reasoning_delta(event: Mapping[str, Any]) -> dict[str, Any]:
    return native.delta({"reasoning_content": native.text(event.get("delta"), "event")})


def _item_added(event: Mapping[str, Any]) -> dict[str, Any]:
    item = event.get("item")
    if not isinstance(item, dict) or item.get("type") != "function_call":
        return native.nothing()
    number = native.index(event.get("output_index"), "event")
    call_id = native.text(item.get("call_id"), "event")
    fragment = native.call(number, call_id=call_id, name=item.get("name"))
    return native.delta({"tool_calls": [fragment]})


def _arguments_delta(event: Mapping[str, Any]) -> dict[str, Any]:
    number = native.index(event.get("output_index"), "event")
    piece = native.text(event.get("delta"), "event")
    return native.delta({"tool_calls": [native.call(number, arguments=piece)]})


def _finished(event: Mapping[str, Any]) -> dict[str, Any]:
    response = event.get("response")
    if not isinstance(response, dict):
        raise native.malformed("event")
    chunk = native.delta({}, _finish(response))
    if (usage := _usage(response.get("usage"))) is not None:
        chunk["usage"] = usage
    return chunk


def _error(event: Mapping[str, Any]) -> dict[str, Any]:
    raise native.failed(event.get("error") or event.get("response"))


_EVENTS: dict[str, native.EventReader] = {
    "error": _error,
    "response.failed": _error,
    "response.output_text.delta": _text_delta,
    "response.reasoning_text.delta": _reasoning_delta,
    "response.output_item.added": _item_added,
    "response.function_call_arguments.delta": _arguments_delta,
    "response.completed": _finished,
    "response.incomplete": _finished,
}


def parse_response_event(payload: bytes) -> dict[str, Any]:
    """One Responses stream event as a chat.completion.chunk dict."""
    return native.read_event(payload, _EVENTS)


RESPONSES = WireRoute("responses", "/responses", parse_response, parse_response_event)
