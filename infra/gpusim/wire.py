"""JSON bodies and SSE chunks in vLLM's shapes."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Any

import orjson
from starlette.types import Receive

from gpusim.generate import ChoiceResult

JSON_HEADERS = [(b"content-type", b"application/json")]
SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
]
DONE = b"data: [DONE]\n\n"


def completion_id() -> str:
    return "chatcmpl-" + os.urandom(16).hex()


def usage(
    prompt_tokens: int, completion_tokens: int, cached_tokens: int | None = None
) -> dict[str, Any]:
    """vLLM's UsageInfo; ``prompt_tokens_details`` only with cached tokens to report (vLLM
    with --enable-prompt-tokens-details leaves it out when none were cached)."""
    out: dict[str, Any] = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }
    if cached_tokens:
        out["prompt_tokens_details"] = {"cached_tokens": cached_tokens}
    return out


def completion_body(
    model: str,
    prompt_tokens: int,
    results: Sequence[ChoiceResult],
    *,
    with_usage: bool,
    cached_tokens: int | None = None,
) -> bytes:
    body: dict[str, Any] = {
        "id": completion_id(),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": index,
                "message": r.message
                or {"role": "assistant", "content": r.content, "refusal": None},
                "logprobs": None if r.logprobs is None else {"content": r.logprobs},
                "finish_reason": r.finish_reason,
                "stop_reason": r.stop_reason,
            }
            for index, r in enumerate(results)
        ],
    }
    if with_usage:
        completion = sum(r.completion_tokens for r in results)
        body["usage"] = usage(prompt_tokens, completion, cached_tokens)
    return orjson.dumps(body)


def sse(data: Any) -> bytes:
    return b"data: " + orjson.dumps(data) + b"\n\n"


class ChunkEncoder:
    """``chat.completion.chunk`` events of one streamed response."""

    def __init__(self, model: str, *, usage_field: bool) -> None:
        self._base: dict[str, Any] = {
            "id": completion_id(),
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
        }
        # vLLM puts "usage": null on every chunk when stream_options.include_usage is set
        self._usage_field = usage_field

    def _chunk(self, choice: dict[str, Any]) -> bytes:
        chunk = {**self._base, "choices": [choice]}
        if self._usage_field:
            chunk["usage"] = None
        return sse(chunk)

    def _delta(
        self, index: int, delta: dict[str, Any], logprobs: dict[str, Any] | None = None
    ) -> bytes:
        return self._chunk(
            {"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": None}
        )

    def step(self, index: int, result: ChoiceResult, j: int) -> bytes | None:
        """The chunk for generated token j of a choice (None: vLLM sends none). The last
        token's chunk is the finish chunk's job."""
        logprobs = None if result.logprobs is None else {"content": [result.logprobs[j]]}
        if result.deltas is not None:
            delta: dict[str, Any] | None = result.deltas[j]
        else:
            delta = {"content": result.steps[j]} if result.steps[j] else None
        if j == len(result.steps) - 1 and logprobs is not None and delta is None:
            return None  # the finish chunk carries the last token's logprobs
        if delta is None and logprobs is None:
            return None
        return self._delta(index, delta or {}, logprobs)

    def role(self, index: int) -> bytes:
        return self._delta(index, {"role": "assistant", "content": ""})

    def content(self, index: int, text: str) -> bytes:
        return self._delta(index, {"content": text})

    def finish(self, index: int, result: ChoiceResult) -> bytes:
        last = len(result.steps) - 1
        logprobs = None
        if result.logprobs is not None and not self._sent_with_delta(result, last):
            logprobs = {"content": [result.logprobs[last]]}
        return self._chunk(
            {
                "index": index,
                "delta": {},
                "logprobs": logprobs,
                "finish_reason": result.finish_reason,
                "stop_reason": result.stop_reason,
            }
        )

    @staticmethod
    def _sent_with_delta(result: ChoiceResult, j: int) -> bool:
        if j < 0:
            return True
        if result.deltas is not None:
            return result.deltas[j] is not None
        return bool(result.steps[j])

    def usage(
        self, prompt_tokens: int, completion_tokens: int, cached_tokens: int | None = None
    ) -> bytes:
        counts = usage(prompt_tokens, completion_tokens, cached_tokens)
        return sse({**self._base, "choices": [], "usage": counts})


async def read_body(receive: Receive) -> bytes | None:
    """The request body, or None when the client went away first."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)
