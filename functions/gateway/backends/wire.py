"""What upstreams send back, parsed as untrusted input.

One parser for chunks and one for whole completions, shared by every backend. A body or
chunk that is not the shape OpenAI defines is an UpstreamError (a 502, or the error event
that ends a stream); usage figures that are not sane non-negative integers are dropped, so
the gateway's own count is billed. Upstream error text is never sent to clients: it is
logged at DEBUG, and the client gets a generic message with the upstream's status class.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from gateway.errors import GatewayError, InvalidRequestError, UpstreamError

logger = logging.getLogger(__name__)

# No real request comes near this; a figure above it is an upstream bug or an attack.
MAX_USAGE_TOKENS = 100_000_000
MAX_CHOICES = 128
_TEXT_FIELDS = ("content", "reasoning_content", "refusal")


class MalformedUpstream(UpstreamError):
    code = "upstream_malformed_response"


def _malformed(what: str) -> MalformedUpstream:
    return MalformedUpstream(f"The model endpoint sent a malformed {what}.")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def usage_figures(usage: Any) -> tuple[int, int] | None:
    """(prompt, completion) from an upstream `usage`, or None if absent or not sane."""
    if not isinstance(usage, Mapping):
        return None
    prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
    if not (isinstance(prompt, int) and isinstance(completion, int)):
        return None
    if isinstance(prompt, bool) or isinstance(completion, bool):
        return None
    if not (0 <= prompt <= MAX_USAGE_TOKENS and 0 <= completion <= MAX_USAGE_TOKENS):
        return None
    return prompt, completion


def cached_figure(usage: Any, *, prompt: int) -> int | None:
    """`prompt_tokens_details.cached_tokens` of an upstream `usage` (vLLM with
    --enable-prompt-tokens-details: prompt tokens found in its prefix cache), or None if
    absent or not sane (not an int from 0 to the prompt)."""
    details = usage.get("prompt_tokens_details") if isinstance(usage, Mapping) else None
    cached = details.get("cached_tokens") if isinstance(details, Mapping) else None
    if not isinstance(cached, int) or isinstance(cached, bool) or not 0 <= cached <= prompt:
        return None
    return cached


def _check_text_fields(part: Mapping[str, Any], what: str) -> None:
    for name in _TEXT_FIELDS:
        value = part.get(name)
        if value is not None and not isinstance(value, str):
            raise _malformed(what)
    tool_calls = part.get("tool_calls")
    if tool_calls is not None and not (
        isinstance(tool_calls, list) and all(isinstance(t, dict) for t in tool_calls)
    ):
        raise _malformed(what)


def _check_choice(choice: Any, body_key: str | None, what: str) -> None:
    """`body_key` names the choice's message part (chat); None: the choice holds its
    generated `text` itself (legacy completions)."""
    if not isinstance(choice, dict):
        raise _malformed(what)
    index = choice.get("index", 0)
    if not _is_int(index) or not 0 <= index < MAX_CHOICES:
        raise _malformed(what)
    if body_key is None:
        if not isinstance(choice.get("text", ""), str | None):
            raise _malformed(what)
    else:
        part = choice.get(body_key)
        if part is None:
            part = {}
        if not isinstance(part, dict):
            raise _malformed(what)
        _check_text_fields(part, what)
    finish = choice.get("finish_reason")
    if finish is not None and not isinstance(finish, str):
        raise _malformed(what)


def _loads(payload: bytes, what: str) -> Any:
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise _malformed(what) from exc


def parse_chunk(payload: bytes, *, body_key: str | None = "delta") -> dict[str, Any]:
    """One streamed event's data as a chat.completion.chunk dict (or, with
    `body_key=None`, a text_completion chunk)."""
    chunk = _loads(payload, "event")
    if not isinstance(chunk, dict):
        raise _malformed("event")
    if "error" in chunk:
        log_upstream_text(0, chunk.get("error"))
        raise UpstreamError("The model endpoint failed mid-stream.", code="upstream_stream_error")
    choices = chunk.get("choices")
    if choices is None:
        choices = chunk["choices"] = []
    if not isinstance(choices, list):
        raise _malformed("event")
    for choice in choices:
        _check_choice(choice, body_key, "event")
    return chunk


def parse_completion(raw: bytes, *, body_key: str | None = "message") -> dict[str, Any]:
    """A non-streamed answer as a chat.completion dict (or, with `body_key=None`, a
    text_completion)."""
    data = _loads(raw, "body")
    if not isinstance(data, dict) or not isinstance(data.get("choices"), list):
        raise _malformed("body")
    for choice in data["choices"]:
        _check_choice(choice, body_key, "body")
    return data


def parse_text_completion(raw: bytes) -> dict[str, Any]:
    return parse_completion(raw, body_key=None)


def parse_text_chunk(payload: bytes) -> dict[str, Any]:
    return parse_chunk(payload, body_key=None)


def _check_embedding(item: Any) -> None:
    if not isinstance(item, dict) or not _is_int(item.get("index", 0)):
        raise _malformed("body")
    vector = item.get("embedding")
    if isinstance(vector, str):  # base64, as asked
        return
    if not isinstance(vector, list) or not all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in vector
    ):
        raise _malformed("body")


def parse_embeddings(raw: bytes) -> dict[str, Any]:
    """An embeddings list: `data` items with a float list (or base64 string) each."""
    data = _loads(raw, "body")
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise _malformed("body")
    for item in data["data"]:
        _check_embedding(item)
    return data


def _no_stream(_payload: bytes) -> dict[str, Any]:
    raise _malformed("event")


@dataclass(frozen=True)
class WireRoute:
    """One OpenAI route an upstream serves: its path under /v1 and its reply parsers."""

    name: str
    path: str
    parse_body: Callable[[bytes], dict[str, Any]]
    parse_chunk: Callable[[bytes], dict[str, Any]]


CHAT = WireRoute("chat", "/chat/completions", parse_completion, parse_chunk)
COMPLETIONS = WireRoute("completions", "/completions", parse_text_completion, parse_text_chunk)
EMBEDDINGS = WireRoute("embeddings", "/embeddings", parse_embeddings, _no_stream)
WIRE_ROUTES = {route.name: route for route in (CHAT, COMPLETIONS, EMBEDDINGS)}


def log_upstream_text(status: int, text: Any) -> None:
    # The upstream's own words may carry internal paths or tokens: DEBUG only, bounded.
    logger.debug("upstream error text", extra={"status": status, "text": str(text)[:500]})


def status_error(status: int, raw: bytes, headers: Mapping[str, str] | None = None) -> GatewayError:
    """The gateway's error for an upstream that answered `status` (>= 400)."""
    log_upstream_text(status, raw[:500].decode("utf-8", "replace"))
    logger.warning("upstream answered with an error", extra={"status": status})
    if status in (400, 413, 422):
        return InvalidRequestError(
            f"The model endpoint rejected the request (HTTP {status}).",
            code="upstream_rejected_request",
        )
    retry_after = (headers or {}).get("Retry-After")
    if status in (429, 503) and retry_after and len(retry_after) <= 64:
        # The upstream says when to retry: the client gets the same status and header, so
        # SDKs back off and retry instead of failing on a 502.
        return UpstreamError(
            "The model endpoint is busy; retry after the time given in Retry-After.",
            status_code=status,
            code="upstream_overloaded" if status == 503 else "upstream_rate_limited",
            headers={"Retry-After": retry_after},
        )
    return UpstreamError(
        f"The model endpoint failed (HTTP {status}).", code=f"upstream_http_{status}"
    )
