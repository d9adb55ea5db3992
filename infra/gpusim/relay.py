"""Serve another API on top of gpusim's chat route, in process.

vLLM's Anthropic Messages serving converts each request into a chat-completions request,
runs its own chat serving and converts the result (``anthropic/serving.py``:
``create_messages`` -> ``create_chat_completion`` -> ``messages_full_converter`` /
``message_stream_converter``); its Responses serving renders the same chat template and
streams the same parser deltas (``DeltaMessage``: content, tool_calls) that chat turns into
chunks. gpusim does the same: the converted body goes through the chat route's own ASGI
app, so the prompt, the generated text, the tool calls, the timing, disconnects and the
token counts are exactly the chat route's. Only the chat route's HTTP contract is used
(status, JSON body or ``data:`` events), never its internals.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gpusim.wire import JSON_HEADERS, SSE_HEADERS


class Translation(Protocol):
    """How one request's chat output becomes another API's output (bytes to send)."""

    def completion(self, body: Mapping[str, Any]) -> bytes:
        """A buffered chat.completion (HTTP 200) as this API's body."""

    def error(self, status: int, body: Mapping[str, Any]) -> bytes:
        """A chat error body ``{"error": {...}}`` as this API's error body."""

    def begin(self) -> bytes:
        """Events sent as soon as the chat stream starts, before its first chunk."""

    def chunk(self, chunk: Mapping[str, Any]) -> bytes:
        """One chat.completion.chunk as this API's events (b"" for none)."""

    def done(self) -> bytes:
        """The chat stream's ``[DONE]``: this API's closing events."""

    def failure(self, body: Mapping[str, Any]) -> bytes:
        """A ``data: {"error": ...}`` event ending the chat stream."""


def sse_event(event: str, data: Any) -> bytes:
    """One named server-sent event, as vLLM writes them (``event: X\\ndata: {json}``)."""
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


def _content_type(headers: list[tuple[bytes, bytes]]) -> bytes:
    for name, value in headers:
        if name.lower() == b"content-type":
            return value
    return b""


class _Relay:
    """The ``send`` given to the chat app: reads its response, sends the translation."""

    def __init__(self, send: Send, translation: Translation) -> None:
        self._send = send
        self._translation = translation
        self._status = 200
        self._headers: list[tuple[bytes, bytes]] = []
        self._streaming = False
        self._body = bytearray()

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self._status = message["status"]
            self._headers = [
                (k, v) for k, v in message.get("headers", []) if k.lower() == b"retry-after"
            ]
            raw_headers = list(message.get("headers", []))
            self._streaming = self._status == 200 and _content_type(raw_headers).startswith(
                b"text/event-stream"
            )
            if self._streaming:
                await self._send(
                    {"type": "http.response.start", "status": 200, "headers": SSE_HEADERS}
                )
                opening = self._translation.begin()
                if opening:
                    await self._send(
                        {"type": "http.response.body", "body": opening, "more_body": True}
                    )
            return
        if message["type"] != "http.response.body":
            return
        more = bool(message.get("more_body", False))
        self._body += message.get("body", b"")
        if self._streaming:
            await self._send_events(more)
        elif not more:
            await self._send_buffered()

    async def _send_events(self, more: bool) -> None:
        out = bytearray()
        while (end := self._body.find(b"\n\n")) != -1:
            event = bytes(self._body[:end])
            del self._body[: end + 2]
            if not event.startswith(b"data: "):
                continue
            data = event[len(b"data: ") :]
            if data == b"[DONE]":
                out += self._translation.done()
                continue
            parsed = orjson.loads(data)
            if "error" in parsed and "choices" not in parsed:
                out += self._translation.failure(parsed)
            else:
                out += self._translation.chunk(parsed)
        await self._send({"type": "http.response.body", "body": bytes(out), "more_body": more})

    async def _send_buffered(self) -> None:
        parsed = orjson.loads(bytes(self._body))
        if self._status == 200:
            body = self._translation.completion(parsed)
        else:
            body = self._translation.error(self._status, parsed)
        headers = [
            *JSON_HEADERS,
            (b"content-length", str(len(body)).encode()),
            *self._headers,
        ]
        await self._send(
            {"type": "http.response.start", "status": self._status, "headers": headers}
        )
        await self._send({"type": "http.response.body", "body": body, "more_body": False})


async def relay_chat(
    chat: ASGIApp,
    *,
    scope: Scope,
    body: Mapping[str, Any],
    receive: Receive,
    send: Send,
    translation: Translation,
) -> None:
    """Run the chat app on ``body`` (a chat-completions request) and send its output
    through ``translation``. The client's ``receive`` stays connected, so a disconnect
    cancels the generation as it does on the chat route."""
    raw = orjson.dumps(body)
    delivered = False

    async def chat_receive() -> Message:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": raw, "more_body": False}
        return await receive()

    await chat(scope, chat_receive, _Relay(send, translation))


async def send_body(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    raw_headers = [*JSON_HEADERS, (b"content-length", str(len(body)).encode())]
    await send(
        {"type": "http.response.start", "status": status, "headers": raw_headers + (headers or [])}
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})
