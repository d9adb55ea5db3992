"""A streamed chat completion as the Responses API's named events (OpenAI's order, each
with the next `sequence_number`, from 0):

    response.created, response.in_progress,
    per output item, in order:
      reasoning:  response.output_item.added, response.content_part.added,
                  response.reasoning_text.delta..., response.reasoning_text.done,
                  response.content_part.done, response.output_item.done
      a message:  response.output_item.added, response.content_part.added,
                  response.output_text.delta..., response.output_text.done,
                  response.content_part.done, response.output_item.done
      a call:     response.output_item.added, response.function_call_arguments.delta...,
                  response.function_call_arguments.done, response.output_item.done
    response.completed | response.incomplete | response.failed

The caller feeds each upstream chat.completion.chunk dict to `feed` and sends what it
returns; `finish` (with the billed usage) or `fail` (with the error) ends the stream.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from gateway.errors import GatewayError
from gateway.pipeline.chat_reading import argument_piece, call_function, chunk_delta, reasoning_of
from gateway.responses.answer import (
    Status,
    function_call_item,
    incomplete_reason,
    item_id,
    response_object,
)
from gateway.responses.protocol import ResponsesRequest
from gateway.responses.stream_items import MESSAGE, REASONING, ContentKind, OpenItem

Event = tuple[str, dict[str, Any]]


def sse_frame(event: Event) -> bytes:
    """One named SSE event, as OpenAI sends them."""
    name, payload = event
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


class ResponsesStream:
    """One streamed response's events. Not thread-safe; one per request."""

    def __init__(
        self, *, response_id: str, created: int, model: str, request: ResponsesRequest
    ) -> None:
        self._response_id = response_id
        self._created = created
        self._model = model
        self._request = request
        self._sequence = 0
        self._output: list[dict[str, Any]] = []
        self._open: OpenItem | None = None
        self._finish_reason: str | None = None

    @property
    def output(self) -> list[dict[str, Any]]:
        """The finished output items so far (what a stored response keeps)."""
        return list(self._output)

    def _event(self, kind: str, /, **fields: Any) -> Event:
        payload = {"type": kind, "sequence_number": self._sequence, **fields}
        self._sequence += 1
        return kind, payload

    def _response(
        self,
        status: Status,
        *,
        usage: Mapping[str, Any] | None = None,
        incomplete: str | None = None,
        error: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        return response_object(
            response_id=self._response_id,
            created=self._created,
            model=self._model,
            request=self._request,
            status=status,
            output=list(self._output),
            usage=usage,
            incomplete=incomplete,
            error=error,
        )

    def start(self) -> list[Event]:
        """The first two events, sent before the upstream answers."""
        snapshot = self._response("in_progress")
        return [
            self._event("response.created", response=snapshot),
            self._event("response.in_progress", response=snapshot),
        ]

    def feed(self, chunk: Mapping[str, Any]) -> list[Event]:
        """The events of one upstream chat.completion.chunk (none for its usage chunk)."""
        events: list[Event] = []
        if (read := chunk_delta(chunk)) is None:  # a Responses request has one choice
            return events
        choice, delta = read
        thought = reasoning_of(delta)
        if thought:
            events.extend(self._reasoning(thought))
        content = delta.get("content")
        if isinstance(content, str) and content:
            events.extend(self._text(content))
        calls = delta.get("tool_calls")
        for call in calls if isinstance(calls, list) else []:
            if isinstance(call, dict):
                events.extend(self._call(call))
        if choice.get("finish_reason"):
            self._finish_reason = str(choice["finish_reason"])
        return events

    def _reasoning(self, thought: str) -> list[Event]:
        """vLLM's order: a reasoning item with one reasoning_text part."""
        return self._content(REASONING, thought)

    def _text(self, content: str) -> list[Event]:
        return self._content(MESSAGE, content)

    def _content(self, kind: ContentKind, piece: str) -> list[Event]:
        """A piece of a reasoning or message item's one part, opening the item first
        when another is open."""
        events: list[Event] = []
        item = self._open
        if item is None or item.kind != kind.name:
            events.extend(self._close())
            index = len(self._output)
            item = self._open = OpenItem(
                index, item_id(kind.prefix, self._response_id, index), kind.name
            )
            events.append(
                self._event(
                    "response.output_item.added",
                    output_index=index,
                    item=kind.item(item.id, "", "in_progress"),
                )
            )
            events.append(self._event("response.content_part.added", **self._part(item, kind, "")))
        item.text.append(piece)
        events.append(
            self._event(
                f"response.{kind.text}.delta",
                item_id=item.id,
                output_index=item.index,
                content_index=0,
                delta=piece,
                **kind.extra(),
            )
        )
        return events

    def _part(self, item: OpenItem, kind: ContentKind, text: str) -> dict[str, Any]:
        """The fields of a content_part event: the item's one part."""
        return {
            "item_id": item.id,
            "output_index": item.index,
            "content_index": 0,
            "part": kind.part(text),
        }

    def _call(self, call: Mapping[str, Any]) -> list[Event]:
        events: list[Event] = []
        function, number = call_function(call)
        item = self._open
        if item is None or item.kind != "function_call" or item.call != number:
            events.extend(self._close())
            index = len(self._output)
            item = self._open = OpenItem(
                index, item_id("fc", self._response_id, index), "function_call", call=number
            )
            item.call_id = str(call.get("id") or item_id("call", self._response_id, index))
            item.name = str(function.get("name") or "")
            events.append(
                self._event(
                    "response.output_item.added",
                    output_index=index,
                    item=function_call_item(
                        item.id,
                        call_id=item.call_id,
                        name=item.name,
                        arguments="",
                        status="in_progress",
                    ),
                )
            )
        elif not item.name and function.get("name"):
            item.name = str(function["name"])
        if piece := argument_piece(function):
            item.text.append(piece)
            events.append(
                self._event(
                    "response.function_call_arguments.delta",
                    item_id=item.id,
                    output_index=item.index,
                    delta=piece,
                )
            )
        return events

    def _close(self, status: Status = "completed") -> list[Event]:
        item, self._open = self._open, None
        if item is None:
            return []
        text = "".join(item.text)
        if item.kind == "function_call":
            return self._close_call(item, text)
        kind = REASONING if item.kind == REASONING.name else MESSAGE
        done = kind.item(item.id, text, "completed" if kind is REASONING else status)
        self._output.append(done)
        return [
            self._event(
                f"response.{kind.text}.done",
                item_id=item.id,
                output_index=item.index,
                content_index=0,
                text=text,
                **kind.extra(),
            ),
            self._event("response.content_part.done", **self._part(item, kind, text)),
            self._event("response.output_item.done", output_index=item.index, item=done),
        ]

    def _close_call(self, item: OpenItem, text: str) -> list[Event]:
        done = function_call_item(
            item.id, call_id=item.call_id, name=item.name, arguments=text, status="completed"
        )
        self._output.append(done)
        return [
            self._event(
                "response.function_call_arguments.done",
                item_id=item.id,
                output_index=item.index,
                name=item.name,
                arguments=text,
            ),
            self._event("response.output_item.done", output_index=item.index, item=done),
        ]

    def finish(self, usage: Mapping[str, Any] | None) -> list[Event]:
        """The last events of a stream the upstream ended: the open item's done events
        and response.completed (or response.incomplete after `length` /
        `content_filter`), with `usage`, the billed chat usage."""
        incomplete = incomplete_reason(self._finish_reason)
        status: Status = "incomplete" if incomplete else "completed"
        events = self._close("incomplete" if incomplete else "completed")
        kind = "response.incomplete" if incomplete else "response.completed"
        response = self._response(status, usage=usage, incomplete=incomplete)
        events.append(self._event(kind, response=response))
        return events

    def fail(self, error: GatewayError, usage: Mapping[str, Any] | None = None) -> list[Event]:
        """The last event of a stream that failed after it started: response.failed,
        with the error (code `rate_limit_exceeded` for a 429, else `server_error`, the
        codes OpenAI's schema allows) and whatever output was finished."""
        self._open = None
        code = "rate_limit_exceeded" if error.status_code == 429 else "server_error"
        response = self._response(
            "failed", usage=usage, error={"code": code, "message": error.message}
        )
        return [self._event("response.failed", response=response)]
