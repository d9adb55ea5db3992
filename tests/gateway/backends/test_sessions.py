"""The upstream pool and the load sampler, used from a second event loop, close the
sessions they made on the first one, on that loop (backends/sessions.py); before, they
dropped them open, and the garbage collector reported each pooled socket as unclosed."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import aiohttp
from gateway.backends import HttpPool
from gateway.backends.health import EndpointState
from gateway.backends.load import LoadSampler
from gateway.models.registry import OpenAIEndpoint
from gateway.settings import Settings
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from tests.support.servers import serve_asgi

T = TypeVar("T")


@contextmanager
def loop_in_a_thread() -> Iterator[Callable[[Callable[[], Awaitable[T]]], T]]:
    """An event loop running in its own thread (as uvicorn's is beside a test): yields a
    function that runs a coroutine on it and returns its result."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    def run(make: Callable[[], Awaitable[T]]) -> T:
        async def call() -> T:
            return await make()

        return asyncio.run_coroutine_threadsafe(call(), loop).result(timeout=20)

    try:
        yield run
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=20)
        loop.close()


async def closed(session: aiohttp.ClientSession) -> bool:
    """True once `session` is closed (on its own loop; a few turns of it at most)."""
    for _ in range(1000):
        if session.closed:
            await asyncio.sleep(0)  # its connections' close callbacks run
            return True
        await asyncio.sleep(0)
    return False


@contextmanager
def metrics_server() -> Iterator[str]:
    async def metrics(request: Any) -> PlainTextResponse:
        return PlainTextResponse("vllm:num_requests_running 1.0\nvllm:num_requests_waiting 0\n")

    with serve_asgi(Starlette(routes=[Route("/metrics", metrics)])) as url:
        yield url


def test_the_pools_sessions_of_an_earlier_loop_are_closed_on_it() -> None:
    pool = HttpPool(Settings())
    with metrics_server() as url, loop_in_a_thread() as on_first:
        upstream = OpenAIEndpoint(base_url=f"{url}/v1")

        async def used() -> aiohttp.ClientSession:
            session = pool.session(upstream)
            async with session.get(f"{url}/metrics") as response:  # one pooled connection
                await response.read()
            return session

        first = on_first(used)

        async def on_second_loop() -> None:
            try:
                assert pool.session(upstream) is not first
            finally:
                await pool.close()

        asyncio.run(on_second_loop())
        assert on_first(lambda: closed(first))


def test_the_samplers_session_of_an_earlier_loop_is_closed_on_it() -> None:
    with metrics_server() as url, loop_in_a_thread() as on_first:
        state = EndpointState("m", "e", 1.0)
        sampler = LoadSampler(interval=3600)
        sampler.watch(f"{url}/metrics", "m", state)

        async def started() -> aiohttp.ClientSession:
            sampler.start()
            await sampler.sample_once()  # a round has scraped: one pooled connection
            assert state.load is not None
            session = sampler._session
            assert session is not None
            return session

        first = on_first(started)

        async def on_second_loop() -> None:
            try:
                sampler.start()
            finally:
                await sampler.close()

        asyncio.run(on_second_loop())
        assert on_first(lambda: closed(first))


def test_a_sampler_restarted_on_its_own_loop_keeps_its_session() -> None:
    """A sampling task that ended on this loop (cancelled) is started again with the same
    session, which close() then closes: none is dropped unclosed."""
    with metrics_server() as url:
        state = EndpointState("m", "e", 1.0)
        sampler = LoadSampler(interval=3600)
        sampler.watch(f"{url}/metrics", "m", state)

        async def restarted() -> tuple[aiohttp.ClientSession, aiohttp.ClientSession | None]:
            try:
                sampler.start()
                await sampler.sample_once()
                first = sampler._session
                assert first is not None and sampler._task is not None
                sampler._task.cancel()
                await asyncio.gather(sampler._task, return_exceptions=True)
                sampler.start()
                return first, sampler._session
            finally:
                await sampler.close()

        first, after = asyncio.run(restarted())
        assert after is first and first.closed
