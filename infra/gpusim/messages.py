"""POST /v1/messages and /v1/messages/count_tokens (Anthropic's wire format) as vLLM serves
them (``anthropic/serving.py``, ``anthropic/api_router.py``): the request becomes a chat
request (gpusim/messages_input.py) run by gpusim's chat route (gpusim/relay.py).

What vLLM answers, and so gpusim:

- Buffered: ``{"id", "type": "message", "role": "assistant", "content", "model",
  "stop_reason", "stop_sequence" (only when one matched), "usage": {"input_tokens",
  "output_tokens"}}`` (``exclude_none``). The id is the chat completion's
  (``chatcmpl-...``). Content: a ``text`` block when the text is not empty, then one
  ``tool_use`` block per call (``id`` the parser's call id, ``input`` the parsed
  arguments); nothing at all gives one empty text block. ``stop_reason``: ``end_turn``
  (natural stop, and after a named ``tool_choice``), ``max_tokens``, ``stop_sequence``
  with ``stop_sequence`` the matched string, ``tool_use`` (auto / any tool calls).
- Streamed: ``event: <type>`` / ``data: <json>``: ``message_start`` (the message with
  empty content, null stop fields and ``usage`` ``{"input_tokens": <prompt>,
  "output_tokens": 0}``), per block ``content_block_start`` (``text`` with ``""``, or
  ``tool_use`` with ``input: {}``), ``content_block_delta`` (``text_delta`` /
  ``input_json_delta``), ``content_block_stop``, then ``message_delta`` (``delta``
  ``{"stop_reason"[, "stop_sequence"]}``, ``usage`` with the final counts) and
  ``message_stop``. vLLM sends no ``ping``. A generation failure mid-stream becomes
  ``event: error`` ``{"type": "error", "error": {"type": "internal_error", "message"}}``
  and the stream ends without ``message_stop``.
- ``input_tokens`` is the prompt minus cached tokens, with ``cache_read_input_tokens``,
  only when the chat usage reports ``prompt_tokens_details.cached_tokens`` (vLLM with
  ``--enable-prompt-tokens-details``); otherwise there are no cache fields.
- Errors raised while serving are Anthropic-shaped, ``{"type": "error", "error": {"type",
  "message"}}``, with vLLM's own error type (``BadRequestError``, ``NotFoundError``...)
  and status; a body that fails request validation (no ``max_tokens``, a wrong type) is
  answered by vLLM's global handler in OpenAI's shape: 400 ``{"error": {"message",
  "type": "Bad Request", "param", "code": 400}}``.
- count_tokens: ``{"input_tokens": N, "context_management": {"original_input_tokens":
  N}}``, N the rendered prompt's tokens (tools included).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping
from typing import Any

import orjson
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from gpusim.config import SimConfig
from gpusim.errors import RequestError
from gpusim.messages_input import chat_body, chat_messages, chat_tools, validate
from gpusim.models import ModelRegistry, TemplateRenderError
from gpusim.relay import relay_chat, send_body, sse_event
from gpusim.structured import null_content_as_empty, strip_media
from gpusim.wire import read_body

_STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use"}


def anthropic_error(error_type: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": error_type, "message": message}}


def _usage(chat_usage: Any) -> dict[str, int]:
    """vLLM's ``_build_anthropic_usage``."""
    if not isinstance(chat_usage, Mapping):
        return {"input_tokens": 0, "output_tokens": 0}
    usage = {"input_tokens": 0, "output_tokens": int(chat_usage.get("completion_tokens") or 0)}
    input_tokens = int(chat_usage.get("prompt_tokens", 0))
    details = chat_usage.get("prompt_tokens_details")
    if isinstance(details, Mapping) and details.get("cached_tokens") is not None:
        input_tokens -= int(details["cached_tokens"])
        usage["cache_read_input_tokens"] = int(details["cached_tokens"])
    usage["input_tokens"] = max(0, input_tokens)
    return usage


def _stop(finish_reason: Any, stop_reason: Any) -> dict[str, Any]:
    if finish_reason == "stop" and isinstance(stop_reason, str):
        return {"stop_reason": "stop_sequence", "stop_sequence": stop_reason}
    return {"stop_reason": _STOP_REASONS.get(finish_reason or "stop")}


class MessagesTranslation:
    """Chat output -> Anthropic output (vLLM's ``messages_full_converter`` and
    ``message_stream_converter``)."""

    def __init__(self, prompt_tokens: int) -> None:
        self._prompt_tokens = prompt_tokens  # for message_start (vLLM's continuous usage)
        self._first = True
        self._finish: Any = None
        self._stop_reason: Any = None
        self._next_index = 0
        self._block_type: str | None = None
        self._block_index: int | None = None
        self._tool_use_id: str | None = None
        self._pending: list[str] = []
        self._tool_ids: dict[int, str] = {}

    # buffered

    def completion(self, body: Mapping[str, Any]) -> bytes:
        choice = body["choices"][0]
        message = choice.get("message") or {}
        content: list[dict[str, Any]] = []
        if message.get("content"):
            content.append({"type": "text", "text": message["content"]})
        for call in message.get("tool_calls") or []:
            function = call.get("function") or {}
            content.append(
                {
                    "type": "tool_use",
                    "id": call.get("id"),
                    "name": function.get("name"),
                    "input": json.loads(function.get("arguments") or "{}"),
                }
            )
        if not content:
            content.append({"type": "text", "text": ""})
        result: dict[str, Any] = {
            "id": body.get("id"),
            "type": "message",
            "role": "assistant",
            "content": content,
            "model": body.get("model"),
            **_stop(choice.get("finish_reason"), choice.get("stop_reason")),
            "usage": _usage(body.get("usage")),
        }
        return orjson.dumps(result)

    def error(self, _status: int, body: Mapping[str, Any]) -> bytes:
        error = body.get("error") if isinstance(body.get("error"), Mapping) else {}
        assert isinstance(error, Mapping)
        return orjson.dumps(anthropic_error(str(error.get("type")), str(error.get("message"))))

    # streamed

    def _start_block(self, block: dict[str, Any]) -> bytes:
        self._block_type = block["type"]
        self._block_index = self._next_index
        self._tool_use_id = block.get("id") if block["type"] == "tool_use" else None
        event = {"type": "content_block_start", "content_block": block, "index": self._block_index}
        return sse_event("content_block_start", event)

    def _stop_block(self) -> bytes:
        if self._block_type is None:
            return b""
        event = {"type": "content_block_stop", "index": self._block_index}
        self._block_type = self._block_index = self._tool_use_id = None
        self._next_index += 1
        return sse_event("content_block_stop", event)

    def _delta(self, delta: dict[str, Any]) -> bytes:
        index = self._block_index if self._block_index is not None else self._next_index
        return sse_event(
            "content_block_delta", {"type": "content_block_delta", "delta": delta, "index": index}
        )

    def _stop_and_flush(self) -> bytes:
        buffered, self._pending = "".join(self._pending), []
        out = self._stop_block()
        if buffered:
            out += self._start_block({"type": "text", "text": ""})
            out += self._delta({"type": "text_delta", "text": buffered})
            out += self._stop_block()
        return out

    def begin(self) -> bytes:
        return b""  # message_start waits for the chat stream's first chunk, as in vLLM

    def chunk(self, chunk: Mapping[str, Any]) -> bytes:
        if self._first:
            self._first = False
            message: dict[str, Any] = {
                "id": chunk.get("id"),
                "type": "message",
                "role": "assistant",
                "content": [],
                "model": chunk.get("model"),
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {"input_tokens": self._prompt_tokens, "output_tokens": 0},
            }
            return sse_event("message_start", {"type": "message_start", "message": message})
        choices = chunk.get("choices") or []
        if not choices:  # the usage chunk
            event = {
                "type": "message_delta",
                "delta": _stop(self._finish, self._stop_reason),
                "usage": _usage(chunk.get("usage")),
            }
            return self._stop_and_flush() + sse_event("message_delta", event)
        choice = choices[0]
        if choice.get("finish_reason") is not None:
            self._finish = choice["finish_reason"]
            self._stop_reason = choice.get("stop_reason")
        delta = choice.get("delta") or {}
        out = b""
        content = delta.get("content")
        if content and self._block_type == "tool_use":
            self._pending.append(content)
        elif content:
            if self._block_type != "text":
                out += self._stop_and_flush() + self._start_block({"type": "text", "text": ""})
            out += self._delta({"type": "text_delta", "text": content})
        for call in delta.get("tool_calls") or []:
            out += self._tool_call(call)
        return out

    def _tool_call(self, call: Mapping[str, Any]) -> bytes:
        function = call.get("function") or {}
        arguments = function.get("arguments")
        out = b""
        if call.get("id") is not None:
            self._tool_ids[call.get("index", 0)] = call["id"]
            if self._tool_use_id != call["id"] and function.get("name") is not None:
                block = {
                    "type": "tool_use",
                    "id": call["id"],
                    "name": function["name"],
                    "input": {},
                }
                out += self._stop_and_flush() + self._start_block(block)
            if arguments and self._tool_use_id == call["id"]:
                out += self._delta({"type": "input_json_delta", "partial_json": arguments})
            return out
        tool_use_id = self._tool_ids.get(call.get("index", 0))
        if tool_use_id is not None and arguments and self._tool_use_id == tool_use_id:
            out += self._delta({"type": "input_json_delta", "partial_json": arguments})
        return out

    def done(self) -> bytes:
        return self._stop_and_flush() + sse_event("message_stop", {"type": "message_stop"})

    def failure(self, body: Mapping[str, Any]) -> bytes:
        error = body.get("error") if isinstance(body.get("error"), Mapping) else {}
        assert isinstance(error, Mapping)
        message = str(error.get("message", "upstream error"))
        return sse_event("error", anthropic_error("internal_error", message))


class _Asgi:
    """A plain ASGI endpoint (Starlette takes a bound method for a request handler)."""

    def __init__(self, handler: ASGIApp) -> None:
        self._handler = handler

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._handler(scope, receive, send)


class MessagesEndpoint:
    """POST /v1/messages and POST /v1/messages/count_tokens."""

    def __init__(self, chat: ASGIApp, config: SimConfig, registry: ModelRegistry) -> None:
        self._chat = chat
        self._config = config
        self._registry = registry

    def routes(self) -> list[Route]:
        return [
            Route("/v1/messages", _Asgi(self.messages), methods=["POST"]),
            Route("/v1/messages/count_tokens", _Asgi(self.count_tokens), methods=["POST"]),
        ]

    async def messages(self, scope: Scope, receive: Receive, send: Send) -> None:
        raw = await read_body(receive)
        if raw is None:
            return
        try:
            body = validate(_decode(raw))
        except RequestError as exc:
            await send_body(send, exc.status, orjson.dumps(exc.body()))
            return
        chat = chat_body(body)
        prompt_tokens = 0
        if body.get("stream"):
            with contextlib.suppress(RequestError):  # the chat route answers the same error
                prompt_tokens = await self._count(chat)
        await relay_chat(
            self._chat,
            scope=scope,
            body=chat,
            receive=receive,
            send=send,
            translation=MessagesTranslation(prompt_tokens),
        )

    async def count_tokens(self, _scope: Scope, receive: Receive, send: Send) -> None:
        raw = await read_body(receive)
        if raw is None:
            return
        try:
            body = validate(_decode(raw), count_only=True)
        except RequestError as exc:
            await send_body(send, exc.status, orjson.dumps(exc.body()))
            return
        chat: dict[str, Any] = {"model": body["model"], "messages": chat_messages(body)}
        tools = chat_tools(body)
        if tools is not None:
            chat["tools"] = tools
        if body.get("chat_template_kwargs") is not None:
            chat["chat_template_kwargs"] = body["chat_template_kwargs"]
        try:
            count = await self._count(chat)
        except RequestError as exc:
            await send_body(send, exc.status, orjson.dumps(anthropic_error(exc.type, exc.message)))
            return
        result = {"input_tokens": count, "context_management": {"original_input_tokens": count}}
        await send_body(send, 200, orjson.dumps(result))

    async def _count(self, chat: Mapping[str, Any]) -> int:
        """The chat route's prompt count for this chat request (the same helpers, so the
        same number)."""
        model = self._registry.get(chat["model"])
        if model is None:
            raise RequestError(404, f"The model `{chat['model']}` does not exist.", param="model")
        await model.ensure_loaded()
        messages, media_tokens = null_content_as_empty(chat["messages"]), 0
        if chat["model"] in self._config.multimodal:
            messages, media_tokens = strip_media(messages)
        try:
            count = model.prompt_tokens(
                messages,
                tools=chat.get("tools"),
                template_kwargs=chat.get("chat_template_kwargs") or None,
            )
        except (TemplateRenderError, ValueError) as exc:
            raise RequestError(400, str(exc)) from exc
        return media_tokens + count


def _decode(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise RequestError(400, f"Invalid JSON body: {exc}") from exc
