"""A streamed chat completion as Anthropic's Messages stream events:

    message_start, ping,
    per content block, in order:
      content_block_start, content_block_delta... (thinking_delta then signature_delta |
      text_delta | input_json_delta), content_block_stop
    message_delta (stop_reason, stop_sequence, the final usage), message_stop

A failure after the stream started is one `error` event (Anthropic's error shape), and
the stream ends. The caller feeds each upstream chat.completion.chunk dict to `feed` and
sends what it returns; `finish` (with the billed usage) or `fail` ends the stream.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from gateway.errors import GatewayError
from gateway.messages.answer import signature, stop_of, usage_of
from gateway.messages.errors import error_body
from gateway.messages.protocol import MessagesRequest
from gateway.pipeline.chat_reading import argument_piece, call_function, chunk_delta, reasoning_of

Event = tuple[str, dict[str, Any]]


def sse_frame(event: Event) -> bytes:
    """One named SSE event, as Anthropic sends them."""
    name, payload = event
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


class MessagesStream:
    """One streamed message's events. Not thread-safe; one per request."""

    def __init__(
        self, *, message_id: str, model: str, request: MessagesRequest, input_tokens: int
    ) -> None:
        self._message_id = message_id
        self._model = model
        self._request = request
        self._input_tokens = input_tokens
        self._blocks = 0  # content blocks started
        self._open: str | None = None  # "thinking", "text" or "tool_use"
        self._call = -1  # the open tool_use block's chat tool call index
        self._tool_use = False
        self._finish_reason: str | None = None
        self._stop_reason: Any = None

    def start(self) -> list[Event]:
        """message_start (usage: the gateway's prompt count, nothing generated yet) and a
        ping, sent before the upstream answers."""
        message: dict[str, Any] = {
            "id": self._message_id,
            "type": "message",
            "role": "assistant",
            "content": [],
            "model": self._model,
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {
                "input_tokens": self._input_tokens,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
                "output_tokens": 0,
            },
        }
        return [("message_start", {"type": "message_start", "message": message}), self.ping()]

    def ping(self) -> Event:
        """A keep-alive event, which clients ignore."""
        return "ping", {"type": "ping"}

    def feed(self, chunk: Mapping[str, Any]) -> list[Event]:
        """The events of one upstream chat.completion.chunk (none for its usage chunk)."""
        events: list[Event] = []
        if (read := chunk_delta(chunk)) is None:
            return events
        choice, delta = read
        thought = reasoning_of(delta)
        if thought:
            if self._open != "thinking":
                events.extend(self._stop_block())
                events.append(
                    self._start_block({"type": "thinking", "thinking": "", "signature": ""})
                )
                self._open = "thinking"
            events.append(self._delta({"type": "thinking_delta", "thinking": thought}))
        content = delta.get("content")
        if isinstance(content, str) and content:
            if self._open != "text":
                events.extend(self._stop_block())
                events.append(self._start_block({"type": "text", "text": ""}))
                self._open = "text"
            events.append(self._delta({"type": "text_delta", "text": content}))
        calls = delta.get("tool_calls")
        for call in calls if isinstance(calls, list) else []:
            if isinstance(call, dict):
                events.extend(self._tool_call(call))
        if choice.get("finish_reason"):
            self._finish_reason = str(choice["finish_reason"])
            self._stop_reason = choice.get("stop_reason")
        return events

    def _tool_call(self, call: Mapping[str, Any]) -> list[Event]:
        events: list[Event] = []
        function, number = call_function(call)
        if self._open != "tool_use" or self._call != number:
            events.extend(self._stop_block())
            block = {
                "type": "tool_use",
                "id": str(call.get("id") or f"toolu_{self._message_id}_{self._blocks}"),
                "name": str(function.get("name") or ""),
                "input": {},
            }
            events.append(self._start_block(block))
            self._open, self._call, self._tool_use = "tool_use", number, True
        if piece := argument_piece(function):
            events.append(self._delta({"type": "input_json_delta", "partial_json": piece}))
        return events

    def _start_block(self, block: dict[str, Any]) -> Event:
        index = self._blocks
        self._blocks += 1
        return "content_block_start", {
            "type": "content_block_start",
            "index": index,
            "content_block": block,
        }

    def _delta(self, delta: dict[str, Any]) -> Event:
        return "content_block_delta", {
            "type": "content_block_delta",
            "index": self._blocks - 1,
            "delta": delta,
        }

    def _stop_block(self) -> list[Event]:
        if self._open is None:
            return []
        events: list[Event] = []
        if self._open == "thinking":  # Anthropic's order: the signature ends the block
            index = self._blocks - 1
            seal = signature(self._message_id, index)
            events.append(self._delta({"type": "signature_delta", "signature": seal}))
        self._open = None
        stop = {"type": "content_block_stop", "index": self._blocks - 1}
        return [*events, ("content_block_stop", stop)]

    def finish(self, usage: Mapping[str, Any] | None) -> list[Event]:
        """The last events of a stream the upstream ended: the open block's stop,
        message_delta with the stop reason and `usage` (the billed chat usage), and
        message_stop."""
        events = self._stop_block()
        stop_reason, stop_sequence = stop_of(
            self._finish_reason or "stop",
            self._stop_reason,
            self._request,
            tool_use=self._tool_use,
        )
        events.append(
            (
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": stop_reason, "stop_sequence": stop_sequence},
                    "usage": usage_of(usage),
                },
            )
        )
        events.append(("message_stop", {"type": "message_stop"}))
        return events

    def fail(self, error: GatewayError, *, request_id: str | None = None) -> list[Event]:
        """The one event that ends a stream that failed after it started."""
        return [("error", error_body(error, request_id=request_id))]
