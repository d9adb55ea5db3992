"""The chat surface's answers: a whole chat.completion, and its stream's kind (how the
pipeline's relay stamps chat.completion.chunk events)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gateway.chat import responses as chat_responses
from gateway.chat.responses import ChatCompletion, ChatCompletionChunk, Choice
from gateway.metering import Meter
from gateway.pipeline.sse import StreamKind, billed_usage


def chat_completion(meter: Meter, choices: list[Choice], data: Mapping[str, Any]) -> ChatCompletion:
    """A whole chat.completion body, with the billed usage of the record."""
    body: ChatCompletion = {
        "id": f"chatcmpl-{meter.request_id}",
        "object": "chat.completion",
        "created": meter.created,
        "model": meter.model_id,
        "choices": choices,
        "usage": billed_usage(meter),
    }
    if isinstance(fingerprint := data.get("system_fingerprint"), str):
        body["system_fingerprint"] = fingerprint
    return body


def chat_usage_chunk(meter: Meter) -> ChatCompletionChunk:
    """A chat stream's last chunk before [DONE] when the client asked for usage."""
    return {
        "id": f"chatcmpl-{meter.request_id}",
        "object": "chat.completion.chunk",
        "created": meter.created,
        "model": meter.model_id,
        "choices": [],
        "usage": billed_usage(meter),
    }


CHAT_STREAM = StreamKind(
    "chat.completion.chunk", "chatcmpl", chat_usage_chunk, logprobs=chat_responses.logprobs
)
