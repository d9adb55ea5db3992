"""Relaying an upstream's OpenAI chunk stream (chat.completion.chunk, text_completion) to
the client as SSE frames: the pipeline's relay step for the OpenAI surfaces.

The relay never writes usage itself: it tells the Meter how the stream ended, in a
`finally` shielded from cancellation, so no await between deciding the record and writing
it can be interrupted, whatever the client does.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any, NotRequired

import anyio
import orjson
from pydantic import ConfigDict, with_config
from typing_extensions import TypedDict  # pydantic needs typing_extensions' on Python < 3.12

from gateway.backends.chunks import aclose_of
from gateway.errors import GatewayError, InternalError, UpstreamError, sse_error_event
from gateway.metering import Meter
from gateway.usage import UsageStatus

logger = logging.getLogger(__name__)

DONE_FRAME = b"data: [DONE]\n\n"
# How vLLM (and gpusim) end a chunk when the client asked for usage (orjson's spelling).
_NULL_USAGE_TAIL = b',"usage":null}'


@with_config(ConfigDict(use_attribute_docstrings=True))
class PromptTokensDetails(TypedDict):
    cached_tokens: int
    """Prompt tokens the model server found in its prefix cache (vLLM's figure)."""


@with_config(ConfigDict(use_attribute_docstrings=True))
class Usage(TypedDict):
    prompt_tokens: int
    """Tokens of the rendered chat template."""
    completion_tokens: int
    """Tokens generated."""
    total_tokens: int
    """Their sum."""
    prompt_tokens_details: NotRequired[PromptTokensDetails]
    """Present when the upstream reported its cached prompt tokens."""


@dataclass(frozen=True)
class StreamKind:
    """What a relayed stream's chunks are: chat.completion.chunk, whose choices carry a
    `delta` (text_field None), or a route whose choices carry their text in `text_field`
    (legacy completions: text_completion, `text`)."""

    object: str
    id_prefix: str
    # The last chunk before [DONE] when the client asked for usage.
    usage_chunk: Callable[[Meter], Mapping[str, Any]]
    text_field: str | None = None
    # Chat chunks carry `"usage": null` until the usage chunk when it was asked for (as
    # OpenAI sends them); vLLM's text_completion chunks leave it out.
    null_usage: bool = True
    # A choice's logprobs in the surface's own shape (chat: OpenAI's content/refusal).
    logprobs: Callable[[Any], Any] | None = None

    def observed(self, data: Mapping[str, Any], part_key: str = "delta") -> Mapping[str, Any]:
        """The chunk (or, with part_key "message", the whole body) as the Meter reads it."""
        if self.text_field is None:
            return data
        choices = [
            {
                "index": choice.get("index", position),
                part_key: {"content": choice.get(self.text_field)},
                "finish_reason": choice.get("finish_reason"),
            }
            for position, choice in enumerate(data["choices"])
        ]
        return {"usage": data.get("usage"), "choices": choices}


def frame(payload: Mapping[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def _stamp_choice(choice: dict[str, Any], kind: StreamKind) -> None:
    choice.pop("stop_reason", None)  # vLLM's, not OpenAI's
    if kind.text_field is not None:  # OpenAI's required keys of a completion choice
        choice.setdefault(kind.text_field, "")
        choice.setdefault("logprobs", None)
        choice.setdefault("finish_reason", None)
    elif choice.get("logprobs") and kind.logprobs is not None:
        choice["logprobs"] = kind.logprobs(choice["logprobs"])


def _stamp(
    meter: Meter, chunk: dict[str, Any], include_usage: bool, kind: StreamKind
) -> dict[str, Any]:
    for choice in chunk["choices"]:
        _stamp_choice(choice, kind)
    chunk["id"] = f"{kind.id_prefix}-{meter.request_id}"
    chunk["object"] = kind.object
    chunk["created"] = meter.created
    chunk["model"] = meter.model_id
    if include_usage and kind.null_usage:
        chunk["usage"] = None
    else:
        chunk.pop("usage", None)
    return chunk


def billed_usage(meter: Meter) -> Usage:
    """The usage of the request's record: what was billed."""
    record = meter.record
    assert record is not None
    usage: Usage = {
        "prompt_tokens": record.prompt_tokens,
        "completion_tokens": record.completion_tokens,
        "total_tokens": record.total_tokens,
    }
    if record.cached_tokens is not None:
        usage["prompt_tokens_details"] = {"cached_tokens": record.cached_tokens}
    return usage


def usage_frame(meter: Meter, kind: StreamKind) -> bytes:
    return b"data: " + orjson.dumps(kind.usage_chunk(meter)) + b"\n\n"


async def close_upstream(chunks: AsyncIterator[Any]) -> None:
    try:
        await aclose_of(chunks)
    except Exception:  # closing a broken stream must not cost the record
        logger.warning("closing the upstream stream failed", exc_info=True)


class Restamp:
    """A chunk's envelope rewritten for the client: `id`, `object`, `created` and `model`
    are the gateway's, vLLM's `stop_reason` goes, logprobs take OpenAI's shape, `usage`
    is null on every chunk when the client asked for usage (OpenAI's format).

    Where that is exact, bytes are spliced instead of a JSON round trip: the upstream
    sends the same envelope head (`{"id":..,"object":..,"created":..,"model":..,`) on
    every chunk of a stream, so a chunk that starts with it byte for byte and whose rest
    has no key the rewrite touches (`stop_reason`, `usage`, object-valued `logprobs`) is
    the gateway's head plus that rest. vLLM ends every chunk with `"usage":null` when the
    client asked for usage (`stream_options.include_usage`): that tail is cut before the
    test, and put back where the client asked for it. A key pattern cannot occur unescaped
    inside a JSON string, so these byte tests only ever send a chunk to the slow path
    needlessly."""

    _HEAD_KEYS = frozenset({"id", "object", "created", "model", "system_fingerprint"})

    def __init__(self, meter: Meter, *, include_usage: bool, kind: StreamKind) -> None:
        self._meter = meter
        self._include_usage = include_usage
        self._kind = kind
        self._null_usage = include_usage and kind.null_usage
        self._head: bytes | None = None  # the upstream's head; b"": this stream cannot splice
        self._ours = b""

    def frame(self, chunk: dict[str, Any], raw: bytes | None) -> bytes:
        if raw is not None and self._kind.text_field is None:
            if self._head is None:
                self._learn(chunk)
            if self._head and raw.startswith(self._head):
                rest = raw[len(self._head) :]
                if rest.endswith(_NULL_USAGE_TAIL):
                    rest = rest[: -len(_NULL_USAGE_TAIL)] + b"}"
                if (
                    rest.startswith(b'"choices":')
                    and rest.endswith(b"}")
                    and b'"stop_reason"' not in rest
                    and b'"usage"' not in rest
                    and b'"logprobs":{' not in rest
                ):
                    if self._null_usage:
                        rest = rest[:-1] + b',"usage":null}'
                    return b"data: " + self._ours + rest + b"\n\n"
        return frame(_stamp(self._meter, chunk, self._include_usage, self._kind))

    def _learn(self, chunk: dict[str, Any]) -> None:
        head: dict[str, Any] = {}
        for name, value in chunk.items():
            if name == "choices":
                break
            head[name] = value
        if not head or not head.keys() <= self._HEAD_KEYS:
            self._head = b""
            return
        self._head = orjson.dumps(head)[:-1] + b","
        ours = {
            **head,
            "id": f"{self._kind.id_prefix}-{self._meter.request_id}",
            "object": self._kind.object,
            "created": self._meter.created,
            "model": self._meter.model_id,
        }
        self._ours = orjson.dumps(ours)[:-1] + b","


async def relay(
    meter: Meter,
    chunks: AsyncIterator[dict[str, Any]],
    *,
    include_usage: bool,
    kind: StreamKind,
) -> AsyncIterator[bytes]:
    """The client's SSE frames. Frames of chunks that arrived in one upstream read go out
    in one write (`chunks.pending`, backends/chunks.py)."""
    failure: GatewayError | None = None
    ended = False
    relayed = 0
    restamp = Restamp(meter, include_usage=include_usage, kind=kind)
    gathered: list[bytes] = []
    try:
        try:
            async for chunk in chunks:
                meter.observe_chunk(kind.observed(chunk))
                if chunk["choices"]:  # else the upstream's usage chunk: ours comes at the end
                    relayed += 1
                    gathered.append(restamp.frame(chunk, getattr(chunks, "raw", None)))
                if gathered and not getattr(chunks, "pending", 0):
                    yield b"".join(gathered)
                    gathered.clear()
            if relayed == 0:
                raise UpstreamError("The model endpoint ended the stream without generating.")
            ended = True
        except GatewayError as exc:
            failure = exc
        except Exception as exc:
            logger.exception("relay failed", extra={"request_id": meter.request_id})
            failure = InternalError("The gateway had an internal error.")
            failure.__cause__ = exc
    finally:
        # Runs on normal end, on failure, and when the client went away (GeneratorExit or
        # cancellation).
        await settle(meter, chunks, failure=failure, ended=ended)
    # Frames of chunks read before a failure are billed, so they are sent first.
    yield b"".join([*gathered, *_last_frames(meter, failure, include_usage, kind)])


async def settle(
    meter: Meter, chunks: AsyncIterator[Any], *, failure: GatewayError | None, ended: bool
) -> None:
    """Close the upstream at once, and bill what was generated, shielded from
    cancellation."""
    with anyio.CancelScope(shield=True):
        await close_upstream(chunks)
        if failure is not None:
            await meter.fail(failure)
        elif ended:
            await meter.close(UsageStatus.COMPLETED)
        else:
            await meter.close(UsageStatus.CLIENT_DISCONNECTED, http_status=499)


def _last_frames(
    meter: Meter, failure: GatewayError | None, include_usage: bool, kind: StreamKind
) -> list[bytes]:
    """The error event, or the usage chunk (when asked for) and [DONE]."""
    if failure is not None:
        return [sse_error_event(failure)]
    if include_usage:
        return [usage_frame(meter, kind), DONE_FRAME]
    return [DONE_FRAME]


class MeteredStream:
    """The relay as the response body. Closing it before its first frame (the client left
    before the response started) still closes the upstream and writes the record, which a
    never-started async generator's own `finally` would not."""

    def __init__(
        self, frames: AsyncIterator[bytes], meter: Meter, chunks: AsyncIterator[Any]
    ) -> None:
        self._frames = frames
        self._meter = meter
        self._chunks = chunks

    def __aiter__(self) -> MeteredStream:
        return self

    async def __anext__(self) -> bytes:
        return await self._frames.__anext__()

    async def aclose(self) -> None:
        try:
            await aclose_of(self._frames)
        finally:
            if self._meter.record is None:
                with anyio.CancelScope(shield=True):
                    await close_upstream(self._chunks)
                    await self._meter.close(UsageStatus.CLIENT_DISCONNECTED, http_status=499)
