"""An upstream stream's chunks as the relay takes them: one at a time, parsed when taken,
from the batches of events that each network read completed.

Two facts ride along for the relay (chat/stream.py), which reads them with `getattr` so
that any wrapper that does not pass them on only costs speed:
- `pending`: chunks of the current read not taken yet. At 0 the next chunk needs a read,
  so the relay sends what it has gathered in one write.
- `raw`: the upstream's own JSON for the chunk last taken, for a byte-level rewrite of its
  envelope where that is exact.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any


class Chunks:
    def __init__(
        self,
        batches: AsyncIterator[list[bytes]],
        parse: Callable[[bytes], dict[str, Any]],
    ) -> None:
        self._batches = batches
        self._parse = parse
        self._batch: list[bytes] = []
        self._taken = 0
        self.raw: bytes | None = None

    @property
    def pending(self) -> int:
        return len(self._batch) - self._taken

    def __aiter__(self) -> Chunks:
        return self

    async def __anext__(self) -> dict[str, Any]:
        while self._taken >= len(self._batch):
            self._batch = await self._batches.__anext__()
            self._taken = 0
        raw = self._batch[self._taken]
        self._taken += 1
        self.raw = None
        chunk = self._parse(raw)  # a malformed event raises here, after the ones before it
        self.raw = raw
        return chunk

    async def aclose(self) -> None:
        self._batch, self._taken = [], 0
        await aclose_of(self._batches)


class PassesChunkFacts:
    """For a wrapper of a chunk stream (tracing, routing): `pending` and `raw` are those of
    the stream it wraps, `self._chunks`, so the relay still batches and splices."""

    _chunks: AsyncIterator[dict[str, Any]]

    @property
    def pending(self) -> int:
        return int(getattr(self._chunks, "pending", 0))

    @property
    def raw(self) -> bytes | None:
        raw: bytes | None = getattr(self._chunks, "raw", None)
        return raw

    async def close_wrapped(self) -> None:
        """Close the wrapped stream (which cancels the upstream request), if it closes."""
        await aclose_of(self._chunks)


async def aclose_of(chunks: AsyncIterator[Any]) -> None:
    """`chunks.aclose()`, for iterators that have one (async generators, Chunks)."""
    aclose = getattr(chunks, "aclose", None)
    if aclose is not None:
        await aclose()
