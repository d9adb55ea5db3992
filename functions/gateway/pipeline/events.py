"""Relaying an upstream's chat chunk stream to the client as another API's named events
(the Responses API's, Anthropic's Messages): the pipeline's relay step for surfaces whose
clients do not speak chat.completion.chunk.

The surface supplies an `EventStream` (its wire adapter: chunks in, SSE frames out); this
module does what every relay must: observe each chunk for the Meter, tell the Meter how
the stream ended in a `finally` shielded from cancellation (the same settling as
pipeline/sse.py), and only then send the last frames, which carry the billed usage.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any, Protocol

from gateway.errors import GatewayError, InternalError, UpstreamError
from gateway.metering import Meter
from gateway.pipeline.sse import billed_usage, settle

logger = logging.getLogger(__name__)


class EventStream(Protocol):
    """One request's events, in its API's wire format (frames are whole SSE events)."""

    def start(self) -> list[bytes]:
        """The frames sent before the first upstream chunk."""
        ...

    def feed(self, chunk: Mapping[str, Any]) -> list[bytes]:
        """The frames of one upstream chat.completion.chunk."""
        ...

    async def finish(self, usage: Mapping[str, Any]) -> list[bytes]:
        """The last frames of a stream the upstream ended, after the record was written:
        `usage` is the billed chat usage (with the upstream's prompt_tokens_details)."""
        ...

    def fail(self, error: GatewayError) -> list[bytes]:
        """The last frames of a stream that failed after it started."""
        ...


async def relay_events(
    meter: Meter, chunks: AsyncIterator[dict[str, Any]], events: EventStream
) -> AsyncIterator[bytes]:
    """The client's SSE frames; the Meter is closed however the stream ends. Frames of
    chunks that arrived in one upstream read go out in one write."""
    failure: GatewayError | None = None
    ended = False
    relayed = 0
    details: Mapping[str, Any] | None = None
    gathered: list[bytes] = []
    try:
        try:
            yield b"".join(events.start())  # before the first token, as vLLM sends them
            async for chunk in chunks:
                meter.observe_chunk(chunk)
                details = _prompt_details(chunk) or details
                if chunk["choices"]:
                    relayed += 1
                    gathered.extend(events.feed(chunk))
                if gathered and not getattr(chunks, "pending", 0):
                    yield b"".join(gathered)
                    gathered.clear()
            if not relayed:
                raise UpstreamError("The model endpoint ended the stream without generating.")
            ended = True
        except Exception as exc:  # noqa: BLE001 - every failure ends the stream the same way
            failure = _as_failure(exc, meter.request_id)
    finally:
        # On normal end, on failure, and when the client went away (GeneratorExit or
        # cancellation): the upstream closed and the record written, shielded.
        await settle(meter, chunks, failure=failure, ended=ended)
    if failure is not None:
        yield b"".join([*gathered, *events.fail(failure)])
        return
    try:
        last = await events.finish(with_details(billed_usage(meter), details))
    except GatewayError as exc:  # e.g. the stored response could not be written
        last = events.fail(exc)
    yield b"".join([*gathered, *last])


def _prompt_details(chunk: Mapping[str, Any]) -> Mapping[str, Any] | None:
    usage = chunk.get("usage")
    details = usage.get("prompt_tokens_details") if isinstance(usage, dict) else None
    return details if isinstance(details, dict) else None


def _as_failure(exc: Exception, request_id: str) -> GatewayError:
    if isinstance(exc, GatewayError):
        return exc
    logger.exception("relay failed", extra={"request_id": request_id})
    failure = InternalError("The gateway had an internal error.")
    failure.__cause__ = exc
    return failure


def with_details(usage: Mapping[str, Any], details: Mapping[str, Any] | None) -> dict[str, Any]:
    """The billed usage with the upstream's prompt_tokens_details (cached tokens), which
    the Responses and Messages usage report."""
    out = dict(usage)
    if details:
        cached = details.get("cached_tokens")
        if isinstance(cached, int) and not isinstance(cached, bool) and cached >= 0:
            out["prompt_tokens_details"] = {"cached_tokens": min(cached, out["prompt_tokens"])}
    return out
