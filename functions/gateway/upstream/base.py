"""What every upstream backend provides."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Protocol

import orjson

from gateway.errors import UpstreamError


class Backend(Protocol):
    async def complete(self, body: dict[str, Any]) -> dict[str, Any]:
        """One chat.completion body. Raises UpstreamError / UpstreamTimeoutError."""
        ...

    async def open_stream(self, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """Start a streamed generation; returns once the upstream accepted it (so failures
        to start are raised here, before the client sees a 200), then yields each
        chat.completion.chunk. Closing the iterator cancels the upstream request."""
        ...


def parse_completion(raw: bytes) -> dict[str, Any]:
    """A non-streamed upstream answer as a chat.completion dict, or UpstreamError."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise UpstreamError("The model endpoint returned invalid JSON.") from exc
    if not isinstance(data, dict) or not isinstance(data.get("choices"), list):
        raise UpstreamError("The model endpoint returned an unexpected body.")
    return data
