"""A hostile OpenAI-compatible upstream: it answers each request with the malformed or
abusive reply its body's `hostile` field names. It shares no code with the gateway.

Every scenario is a reply a broken or compromised model server can really send: bodies
of the wrong shape, chunks with wrong types, oversized events, negative or non-integer
usage, a compression bomb, redirects, and error text that leaks internals.
"""

from __future__ import annotations

import functools
import json
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

LEAK = "/srv/models/secret-path token=hf_LEAKEDTOKEN123"

Send = Callable[[dict[str, Any]], Any]


def _chunk(delta: Any, *, index: Any = 0, finish: Any = None, **extra: Any) -> bytes:
    choice = {"index": index, "delta": delta, "finish_reason": finish}
    payload = {"id": "x", "object": "chat.completion.chunk", "created": 1, "model": "m"}
    return b"data: " + json.dumps({**payload, "choices": [choice], **extra}).encode() + b"\n\n"


GOOD = _chunk({"role": "assistant", "content": "Hel"}) + _chunk({"content": "lo"})

# name -> the SSE body of a streamed reply (status 200, text/event-stream)
STREAMS: dict[str, bytes] = {
    "list_event": GOOD + b"data: [1,2,3]\n\n",
    "string_choice": GOOD + b'data: {"choices": ["x"]}\n\n',
    "string_delta": GOOD + _chunk("oops"),
    "list_index": GOOD + _chunk({"content": "x"}, index=[0]),
    "int_content": GOOD + _chunk({"content": 123}),
    "huge_event": GOOD + _chunk({"content": "x" * (2 << 20)}),
    "not_json": GOOD + b"data: {not json\n\n",
    "usage_only": b'data: {"choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 1}}'
    + b"\n\ndata: [DONE]\n\n",
    "negative_usage": GOOD
    + _chunk({}, finish="stop")
    + b'data: {"choices": [], "usage": {"prompt_tokens": -1000000, "completion_tokens": 5}}\n\n'
    + b"data: [DONE]\n\n",
    "bool_usage": GOOD
    + _chunk({}, finish="stop")
    + b'data: {"choices": [], "usage": {"prompt_tokens": true, "completion_tokens": 2}}\n\n'
    + b"data: [DONE]\n\n",
}

_COMPLETION = {
    "id": "x",
    "object": "chat.completion",
    "created": 1,
    "model": "m",
    "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "Hello"}, "finish_reason": "stop"}
    ],
}

# name -> (status, headers, body) of a non-streamed reply
BODIES: dict[str, tuple[int, dict[str, str], bytes]] = {
    "string_choice": (200, {}, b'{"choices": ["x"]}'),
    "int_content": (
        200,
        {},
        json.dumps({"choices": [{"index": 0, "message": {"content": 123}}]}).encode(),
    ),
    "negative_usage": (
        200,
        {},
        json.dumps(
            {**_COMPLETION, "usage": {"prompt_tokens": -1000000, "completion_tokens": 2}}
        ).encode(),
    ),
    "bool_usage": (
        200,
        {},
        json.dumps(
            {**_COMPLETION, "usage": {"prompt_tokens": True, "completion_tokens": 2}}
        ).encode(),
    ),
    "leaky_error": (500, {}, json.dumps({"error": {"message": LEAK}}).encode()),
    "leaky_400": (400, {}, json.dumps({"error": {"message": LEAK}}).encode()),
    "redirect": (307, {"location": "/landing"}, b""),
}


@functools.cache
def gzip_bomb(inflated: int = 64 << 20) -> bytes:
    """About 64 KB of gzip that inflates to 64 MB (twice the cap), built in pieces."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)  # 31: gzip framing
    block = b" " * (1 << 20)
    parts = [compressor.compress(block) for _ in range(inflated // len(block))]
    return b"".join(parts) + compressor.flush()


@functools.cache
def huge_completion(size: int = 10 << 20) -> bytes:
    """A completion of about 10 MB of varied text, slow to tokenize (seconds)."""
    words = " ".join(f"w{i % 9973}x{i % 31}" for i in range(size // 8))
    body = {
        **_COMPLETION,
        "choices": [{**_COMPLETION["choices"][0], "message": {"content": words}}],
    }
    return json.dumps(body).encode()


@dataclass
class HostileUpstream:
    """The ASGI app. `landed` counts requests that followed a redirect."""

    landed: int = 0
    seen: list[str] = field(default_factory=list)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Send) -> None:
        if scope["type"] != "http":
            return
        raw = b""
        while True:
            message = await receive()
            raw += message.get("body", b"")
            if not message.get("more_body"):
                break
        if scope["path"].endswith("/landing"):
            self.landed += 1
            await _reply(send, 200, {}, json.dumps(_COMPLETION).encode())
            return
        body = json.loads(raw or b"{}")
        # The scenario is the body's `hostile` field, or its `user` (what the Responses
        # and Messages APIs forward to chat from `user` / `metadata.user_id`), or the
        # `metadata.user_id` of a Messages body forwarded as it is (a native upstream).
        metadata = body.get("metadata") if isinstance(body.get("metadata"), dict) else {}
        name = str(body.get("hostile") or body.get("user") or metadata.get("user_id") or "")
        self.seen.append(name)
        if body.get("stream") and name in STREAMS:
            await _reply(send, 200, {"content-type": "text/event-stream"}, STREAMS[name])
        elif name in BODIES:
            status, headers, payload = BODIES[name]
            await _reply(send, status, {"content-type": "application/json", **headers}, payload)
        elif name == "gzip_bomb":
            headers = {"content-type": "application/json", "content-encoding": "gzip"}
            await _reply(send, 200, headers, gzip_bomb())
        elif name == "huge_completion":
            await _reply(send, 200, {"content-type": "application/json"}, huge_completion())
        elif name == "small" or name == "json_for_stream":
            await _reply(
                send, 200, {"content-type": "application/json"}, json.dumps(_COMPLETION).encode()
            )
        else:
            await _reply(send, 404, {}, b"unknown scenario")


async def _reply(send: Send, status: int, headers: dict[str, str], body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(k.encode(), v.encode()) for k, v in headers.items()],
        }
    )
    await send({"type": "http.response.body", "body": body})
