"""A routed stream: its first chunk read before the stream is handed on, then relayed.

Reading the first chunk inside the attempt is what lets a hang or an error before the
first token move to another endpoint; once `RoutedChunks` exists, nothing is retried.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio

from gateway.backends.base import Backend
from gateway.backends.chunks import PassesChunkFacts, aclose_of
from gateway.errors import GatewayError, UpstreamError, UpstreamTimeoutError

Chunk = dict[str, Any]


async def _close(chunks: AsyncIterator[Chunk]) -> None:
    with contextlib.suppress(Exception):
        await aclose_of(chunks)


async def first_chunk(
    backend: Backend, body: dict[str, Any], *, within: float | None
) -> tuple[Chunk, AsyncIterator[Chunk]]:
    """The stream's first chunk and the stream; UpstreamTimeoutError when it takes longer
    than `within` seconds (None: the backend's own read timeout alone)."""
    chunks: AsyncIterator[Chunk] | None = None
    try:
        if within is None:  # no cancel scope to pay for
            chunks = await backend.open_stream(body)
            first = await chunks.__anext__()
        else:
            with anyio.fail_after(within):
                chunks = await backend.open_stream(body)
                first = await chunks.__anext__()
    except TimeoutError as exc:
        if chunks is not None:
            await _close(chunks)
        raise UpstreamTimeoutError("The model endpoint sent no first token in time.") from exc
    except StopAsyncIteration as exc:
        assert chunks is not None
        await _close(chunks)
        raise UpstreamError("The model endpoint ended the stream without generating.") from exc
    except BaseException:
        if chunks is not None:
            await _close(chunks)
        raise
    return first, chunks


class RoutedChunks(PassesChunkFacts):  # the first chunk was taken already: its facts hold
    """The first chunk, then the rest of the endpoint's stream. Once, however it ends:
    `on_done()` when it finished or the client closed it, `on_fail(error)` when the
    endpoint failed mid-stream."""

    def __init__(
        self,
        first: Chunk,
        chunks: AsyncIterator[Chunk],
        *,
        on_done: Callable[[], None],
        on_fail: Callable[[GatewayError], Awaitable[None]],
    ) -> None:
        self._first: Chunk | None = first
        self._chunks = chunks
        self._on_done = on_done
        self._on_fail = on_fail
        self._ended = False

    def __aiter__(self) -> RoutedChunks:
        return self

    async def __anext__(self) -> Chunk:
        if self._first is not None:
            first, self._first = self._first, None
            return first
        try:
            return await self._chunks.__anext__()
        except StopAsyncIteration:
            self._done()
            raise
        except GatewayError as exc:
            if not self._ended:
                self._ended = True
                with anyio.CancelScope(shield=True):
                    await self._on_fail(exc)
            raise
        except Exception:  # a bug, not the endpoint's failure: only stop counting it in flight
            self._done()
            raise

    def _done(self) -> None:
        if not self._ended:
            self._ended = True
            self._on_done()

    async def aclose(self) -> None:
        try:
            await self.close_wrapped()
        finally:
            self._done()
