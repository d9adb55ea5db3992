"""An upstream that serves /v1/responses and /v1/messages streams the way vLLM starts them,
then fails as the test sets `mode`:

- "failed": the API's error event after the first text delta (OpenAI's `response.failed`,
  Anthropic's `error` event, which vLLM sends for a generation error);
- "cut": the stream ends cleanly after the first text delta, without its last event;
- "hang": nothing after the first text delta until the gateway closes the connection
  (`closed` is then set).

It shares no code with the gateway. Served in a thread with tests.support.servers.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from typing import Any

Send = Any


def _sse(name: str, data: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()


def _responses_opening() -> list[bytes]:
    response = {"id": "resp_up", "object": "response", "status": "in_progress", "output": []}
    item = {"id": "msg_up", "type": "message", "role": "assistant", "status": "in_progress",
            "content": []}  # fmt: skip
    part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
    events = [
        {"type": "response.created", "response": response},
        {"type": "response.in_progress", "response": response},
        {"type": "response.output_item.added", "output_index": 0, "item": item},
        {"type": "response.content_part.added", "output_index": 0, "item_id": "msg_up",
         "content_index": 0, "part": part},
        {"type": "response.output_text.delta", "output_index": 0, "item_id": "msg_up",
         "content_index": 0, "delta": "Hello there", "logprobs": []},
    ]  # fmt: skip
    return [_sse(e["type"], {**e, "sequence_number": n}) for n, e in enumerate(events)]


def _responses_failure() -> bytes:
    response = {
        "id": "resp_up",
        "object": "response",
        "status": "failed",
        "output": [],
        "error": {"code": "server_error", "message": "engine dead at /srv/secret"},
    }
    return _sse("response.failed", {"type": "response.failed", "sequence_number": 5,
                                    "response": response})  # fmt: skip


def _messages_opening() -> list[bytes]:
    message = {"id": "chatcmpl-up", "type": "message", "role": "assistant", "content": [],
               "model": "qwen3", "stop_reason": None, "stop_sequence": None,
               "usage": {"input_tokens": 10, "output_tokens": 0}}  # fmt: skip
    events = [
        {"type": "message_start", "message": message},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 0,
         "delta": {"type": "text_delta", "text": "Hello there"}},
    ]  # fmt: skip
    return [_sse(e["type"], e) for e in events]


def _messages_failure() -> bytes:
    error = {"type": "error", "error": {"type": "internal_error", "message": "/srv/secret"}}
    return _sse("error", error)


@dataclass
class NativeFaults:
    mode: str = "failed"
    paths: list[str] = field(default_factory=list)
    closed: threading.Event = field(default_factory=threading.Event)

    async def __call__(self, scope: Any, receive: Any, send: Send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["type"] != "http":
            return
        self.paths.append(scope["path"])
        while (await receive()).get("more_body"):
            pass
        if scope["path"] == "/v1/responses":
            opening, failure = _responses_opening(), _responses_failure()
        elif scope["path"] == "/v1/messages":
            opening, failure = _messages_opening(), _messages_failure()
        else:
            await send({"type": "http.response.start", "status": 404, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        headers = [(b"content-type", b"text/event-stream")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"".join(opening), "more_body": True})
        if self.mode == "hang":
            while (await receive())["type"] != "http.disconnect":
                pass
            self.closed.set()
            return
        last = failure if self.mode == "failed" else b""
        await send({"type": "http.response.body", "body": last, "more_body": False})
