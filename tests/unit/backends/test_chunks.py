"""An upstream stream's chunks taken one at a time from the batches of its reads:
`pending` (chunks of the current read not taken) and `aclose` (closes the reads)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from gateway.backends.chunks import Chunks, PassesChunkFacts, aclose_of
from gateway.backends.wire import MalformedUpstream, parse_chunk

pytestmark = pytest.mark.anyio


def event(text: str) -> bytes:
    return b'{"choices":[{"index":0,"delta":{"content":"' + text.encode() + b'"}}]}'


class Reads:
    """The batches of events each network read completed, as an async generator whose
    `finally` (the connection's release) is observed."""

    def __init__(self, batches: list[list[bytes]]) -> None:
        self.batches = batches
        self.read = 0
        self.released = False

    async def stream(self) -> AsyncIterator[list[bytes]]:
        try:
            for batch in self.batches:
                self.read += 1
                yield batch
        finally:
            self.released = True


async def test_pending_counts_the_chunks_of_the_current_read_not_taken() -> None:
    reads = Reads([[event("a"), event("b"), event("c")], [event("d")]])
    chunks = Chunks(reads.stream(), parse_chunk)
    assert chunks.pending == 0 and reads.read == 0  # nothing read yet
    seen = []
    pendings = []
    async for chunk in chunks:
        seen.append(chunk["choices"][0]["delta"]["content"])
        pendings.append(chunks.pending)
    assert seen == ["a", "b", "c", "d"]
    # 0 after the last chunk of a read: the relay writes what it gathered then
    assert pendings == [2, 1, 0, 0]
    assert reads.read == 2


async def test_raw_is_the_upstreams_json_of_the_chunk_last_taken() -> None:
    chunks = Chunks(Reads([[event("a"), b"{not json", event("c")]]).stream(), parse_chunk)
    await chunks.__anext__()
    assert chunks.raw == event("a")
    with pytest.raises(MalformedUpstream):
        await chunks.__anext__()
    # the malformed event is taken (no raw for it); the one after it is still pending
    assert chunks.raw is None and chunks.pending == 1
    assert (await chunks.__anext__())["choices"][0]["delta"]["content"] == "c"


async def test_aclose_closes_the_reads_and_drops_the_chunks_not_taken() -> None:
    reads = Reads([[event("a"), event("b"), event("c")], [event("d")]])
    chunks = Chunks(reads.stream(), parse_chunk)
    await chunks.__anext__()
    assert chunks.pending == 2
    await chunks.aclose()
    assert reads.released and chunks.pending == 0
    with pytest.raises(StopAsyncIteration):  # nothing more is read after closing
        await chunks.__anext__()
    assert reads.read == 1


async def test_aclose_of_reads_without_aclose_only_drops_the_batch() -> None:
    class PlainReads:
        def __init__(self) -> None:
            self.batches = iter([[event("a"), event("b")]])

        def __aiter__(self) -> PlainReads:
            return self

        async def __anext__(self) -> list[bytes]:
            try:
                return next(self.batches)
            except StopIteration:
                raise StopAsyncIteration from None

    chunks = Chunks(PlainReads(), parse_chunk)
    await chunks.__anext__()
    assert chunks.pending == 1
    await chunks.aclose()
    assert chunks.pending == 0


async def test_aclose_of_closes_what_closes_and_skips_what_does_not() -> None:
    reads = Reads([[event("a")], [event("b")]])
    stream = reads.stream()
    assert await stream.__anext__() == [event("a")]
    await aclose_of(stream)
    assert reads.released
    await aclose_of(iter_without_aclose())  # no aclose: nothing to do, no error


def iter_without_aclose() -> AsyncIterator[list[bytes]]:
    class Plain:
        def __aiter__(self) -> Plain:
            return self

        async def __anext__(self) -> list[bytes]:
            raise StopAsyncIteration

    return Plain()


async def test_a_wrapper_passes_the_wrapped_streams_facts_and_closes_it() -> None:
    reads = Reads([[event("a"), event("b")]])
    chunks = Chunks(reads.stream(), parse_chunk)

    class Wrapper(PassesChunkFacts):
        def __init__(self, inner: Chunks) -> None:
            self._chunks = inner

    wrapper = Wrapper(chunks)
    await chunks.__anext__()
    assert (wrapper.pending, wrapper.raw) == (1, event("a"))
    await wrapper.close_wrapped()
    assert reads.released and wrapper.pending == 0
