"""The upstream connection pools (issue 27, item 2): each endpoint has its own bounded
pool, so one endpoint's hanging requests cannot take another's connections; a request
that waits in vain for its endpoint's pool is told apart from an endpoint that cannot be
reached (routing counts only the latter against the endpoint). Real servers on 127.0.0.1."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
from gateway.backends import HttpPool, OpenAIBackend
from gateway.backends.faults import PoolExhausted, Unreachable
from gateway.models.registry import OpenAIEndpoint
from gateway.settings import Settings

from tests.support.faulty import faulty_upstreams, refused_url

pytestmark = pytest.mark.anyio

BODY: dict[str, Any] = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def pool() -> AsyncIterator[HttpPool]:
    made = HttpPool(Settings(upstream_max_connections=100, upstream_connect_timeout=2))
    yield made
    await made.close()


async def test_one_endpoints_hanging_requests_leave_another_models_endpoint_free(
    pool: HttpPool,
) -> None:
    """100 requests hang on model X's endpoint (a client that left them, a slow prefill):
    model Y's endpoint still answers at once. Before: one pool of 100 connections for the
    whole process, so Y's request waited for a free one and failed after the connect
    timeout (a 504)."""
    async with faulty_upstreams(2) as [hog, other]:
        hog.mode = "stall"
        x = OpenAIBackend(upstream=OpenAIEndpoint(base_url=hog.url, name="x"), pool=pool)
        y = OpenAIBackend(upstream=OpenAIEndpoint(base_url=other.url, name="y"), pool=pool)
        async with anyio.create_task_group() as tasks:
            for _ in range(100):
                tasks.start_soon(x.complete, BODY)
            with anyio.fail_after(20):
                await hog.received(100)  # every one of them holds a connection now
            answer = await y.complete(BODY)
            tasks.cancel_scope.cancel()
        assert answer["choices"][0]["message"]["content"] == "hi"


async def test_an_endpoints_pool_is_bounded_by_its_max_concurrency() -> None:
    """Past `max_concurrency` connections a request waits for a free one; one that waits
    past the connect timeout is PoolExhausted (this process's load), not Unreachable."""
    pool = HttpPool(Settings(upstream_connect_timeout=0.5))
    try:
        async with faulty_upstreams(1) as [slow]:
            slow.mode = "stall"
            upstream = OpenAIEndpoint(base_url=slow.url, max_concurrency=2)
            backend = OpenAIBackend(upstream=upstream, pool=pool)
            assert pool.limit(upstream) == 2
            async with anyio.create_task_group() as tasks:
                for _ in range(2):
                    tasks.start_soon(backend.complete, BODY)
                with anyio.fail_after(20):
                    await slow.received(2)
                with pytest.raises(PoolExhausted):
                    await backend.complete(BODY)
                tasks.cancel_scope.cancel()
            assert slow.hits == 2  # the third never reached the server
    finally:
        await pool.close()


async def test_routes_of_one_endpoint_share_its_pool(pool: HttpPool) -> None:
    from gateway.backends.wire import COMPLETIONS

    async with faulty_upstreams(1) as [upstream]:
        endpoint = OpenAIEndpoint(base_url=upstream.url)
        chat = OpenAIBackend(upstream=endpoint, pool=pool)
        await chat.complete(BODY)
        assert pool.session(endpoint) is pool.session(endpoint)
        OpenAIBackend(upstream=endpoint, pool=pool, route=COMPLETIONS)
        other = OpenAIEndpoint(base_url=upstream.url)  # another model's endpoint, same server
        assert pool.session(other) is not pool.session(endpoint)


async def test_a_refused_connection_is_unreachable(pool: HttpPool) -> None:
    backend = OpenAIBackend(upstream=OpenAIEndpoint(base_url=refused_url()), pool=pool)
    with pytest.raises(Unreachable):
        await backend.complete(BODY)
    with pytest.raises(Unreachable):
        await backend.open_stream({**BODY, "stream": True})


async def test_every_ending_gives_the_pool_its_hold_back(pool: HttpPool) -> None:
    """The pool counts the requests holding or waiting for an endpoint's connections (how
    a full pool is told from an unreachable server): a completion, a stream read to its
    end or closed early, an error status, a dropped stream and a refused connection each
    give their hold back."""
    from gateway.backends.chunks import aclose_of
    from gateway.errors import UpstreamError

    async with faulty_upstreams(1) as [upstream]:
        endpoint = OpenAIEndpoint(base_url=upstream.url)
        backend = OpenAIBackend(upstream=endpoint, pool=pool)
        await backend.complete(BODY)
        assert pool.busy(endpoint) == 0
        chunks = await backend.open_stream({**BODY, "stream": True})
        assert pool.busy(endpoint) == 1  # the stream holds its connection
        _ = [chunk async for chunk in chunks]
        assert pool.busy(endpoint) == 0
        chunks = await backend.open_stream({**BODY, "stream": True})
        await chunks.__anext__()
        await aclose_of(chunks)  # the client left after the first chunk
        assert pool.busy(endpoint) == 0
        upstream.mode = "midstream"
        chunks = await backend.open_stream({**BODY, "stream": True})
        with pytest.raises(UpstreamError):
            _ = [chunk async for chunk in chunks]
        assert pool.busy(endpoint) == 0
        upstream.mode = "status"
        with pytest.raises(UpstreamError):
            await backend.complete(BODY)
        with pytest.raises(UpstreamError):
            await backend.open_stream({**BODY, "stream": True})
        assert pool.busy(endpoint) == 0
    refused = OpenAIEndpoint(base_url=refused_url())
    with pytest.raises(Unreachable):
        await OpenAIBackend(upstream=refused, pool=pool).complete(BODY)
    assert pool.busy(refused) == 0
