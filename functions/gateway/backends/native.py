"""What an upstream that serves the Responses API or Anthropic's Messages API itself (vLLM's
/v1/responses, /v1/messages) sends back, read as the chat completions the rest of the
gateway reads (backends/wire.py): the helpers of wire_responses.py and wire_messages.py.

Each buffered body becomes a chat.completion dict and each stream event a
chat.completion.chunk dict, so routing (failover, cooldowns, the first chunk inside the
attempt), the Meter, the guardrails and the surfaces' own event writers work on native
upstreams unchanged, and a client gets the same answer, events and usage whichever way
its model is served:

- text and reasoning deltas are a delta's `content` and `reasoning_content`; a function
  call (Responses `output_item.added`, Anthropic `content_block_start` of a `tool_use`) is
  a tool call's first fragment (`id`, `name`), its argument deltas the next fragments,
  indexed by the output item's (content block's) index;
- the last event (`response.completed` / `response.incomplete`, Anthropic's
  `message_delta`) carries the finish reason (stop, length, tool_calls) and the usage, as
  chat's `prompt_tokens`, `completion_tokens` and `prompt_tokens_details.cached_tokens`;
- every other event is a chunk without choices (the relay sends nothing for it);
- an error event (`error`, `response.failed`) is an UpstreamError, as a chat stream's.

A stream that ends before its last event was cut: `Ended` makes that an UpstreamError, so
the request is recorded as failed, not completed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import orjson

from gateway.backends.chunks import PassesChunkFacts
from gateway.backends.wire import MAX_CHOICES, MalformedUpstream, log_upstream_text
from gateway.errors import UpstreamError

EventReader = Callable[[Mapping[str, Any]], dict[str, Any]]


def read_event(payload: bytes, readers: Mapping[str, EventReader]) -> dict[str, Any]:
    """One stream event as a chat.completion.chunk dict, by the reader of its `type` (an
    event of any other type carries nothing)."""
    event = json_object(payload, "event")
    kind = event.get("type")
    if not isinstance(kind, str):
        raise malformed("event")
    read = readers.get(kind)
    return nothing() if read is None else read(event)


def malformed(what: str) -> MalformedUpstream:
    return MalformedUpstream(f"The model endpoint sent a malformed {what}.")


def json_object(payload: bytes, what: str) -> dict[str, Any]:
    try:
        data = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise malformed(what) from exc
    if not isinstance(data, dict):
        raise malformed(what)
    return data


def failed(data: Any) -> UpstreamError:
    """The upstream's error event or failed answer (its text is logged at DEBUG only)."""
    log_upstream_text(0, data)
    return UpstreamError("The model endpoint failed mid-stream.", code="upstream_stream_error")


def text(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise malformed(what)
    return value


def index(value: Any, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < MAX_CHOICES:
        raise malformed(what)
    return value


def nothing() -> dict[str, Any]:
    """A chunk with no choices: an event that carries nothing the client is sent."""
    return {"choices": []}


def delta(piece: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {"choices": [{"index": 0, "delta": piece, "finish_reason": finish}]}


def call(
    number: int, *, call_id: Any = None, name: Any = None, arguments: str = ""
) -> dict[str, Any]:
    """A streamed tool call's fragment: the first names the call (`call_id`, `name`)."""
    fragment: dict[str, Any] = {"index": number, "function": {"arguments": arguments}}
    if call_id is not None:
        fragment["id"] = text(call_id, "event")
        fragment["type"] = "function"
        fragment["function"]["name"] = text(name, "event")
    return fragment


def tool_call(call_id: Any, name: Any, arguments: Any) -> dict[str, Any]:
    """A buffered answer's tool call, as chat's message holds it."""
    return {
        "id": text(call_id, "body"),
        "type": "function",
        "function": {"name": text(name, "body"), "arguments": text(arguments, "body")},
    }


def message(texts: list[str], reasoning: list[str], calls: list[dict[str, Any]]) -> dict[str, Any]:
    """A chat message from an answer's pieces."""
    out: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts else None}
    if reasoning:
        out["reasoning_content"] = "".join(reasoning)
    if calls:
        out["tool_calls"] = calls
    return out


def completion(
    answer_id: Any, choice: dict[str, Any], usage: dict[str, Any] | None
) -> dict[str, Any]:
    body: dict[str, Any] = {"id": answer_id, "object": "chat.completion", "choices": [choice]}
    if usage is not None:
        body["usage"] = usage
    return body


def chat_usage(prompt: Any, completion_tokens: Any, cached: Any) -> dict[str, Any]:
    """Chat's usage from another API's figures; the Meter judges whether they are sane."""
    usage: dict[str, Any] = {"prompt_tokens": prompt, "completion_tokens": completion_tokens}
    if isinstance(prompt, int) and isinstance(completion_tokens, int):
        usage["total_tokens"] = prompt + completion_tokens
    if cached is not None:
        usage["prompt_tokens_details"] = {"cached_tokens": cached}
    return usage


class Ended(PassesChunkFacts):
    """A native stream's chunks, and an UpstreamError if it ends before its last event
    (the one with a finish reason): the upstream dropped it, the answer is cut."""

    def __init__(self, chunks: AsyncIterator[dict[str, Any]]) -> None:
        self._chunks = chunks
        self._finished = False

    def __aiter__(self) -> Ended:
        return self

    async def __anext__(self) -> dict[str, Any]:
        try:
            chunk = await self._chunks.__anext__()
        except StopAsyncIteration:
            if not self._finished:
                raise UpstreamError(
                    "The model endpoint ended the stream before the answer was complete.",
                    code="upstream_stream_cut",
                ) from None
            raise
        if any(choice.get("finish_reason") for choice in chunk["choices"]):
            self._finished = True
        return chunk

    async def aclose(self) -> None:
        await self.close_wrapped()
