"""What every upstream backend provides."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Protocol


class Backend(Protocol):
    async def complete(self, body: dict[str, Any]) -> dict[str, Any]:
        """One chat.completion body. Raises UpstreamError / UpstreamTimeoutError."""
        ...

    async def open_stream(self, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """Start a streamed generation; returns once the upstream accepted it (so failures
        to start are raised here, before the client sees a 200), then yields each
        chat.completion.chunk. Closing the iterator cancels the upstream request."""
        ...
