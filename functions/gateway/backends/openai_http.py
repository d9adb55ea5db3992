"""OpenAI-compatible HTTP upstreams (vLLM, TGI's Messages API, SGLang, llama.cpp)."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson

from gateway.backends.chunks import Chunks
from gateway.backends.faults import PoolExhausted, Unreachable
from gateway.backends.sessions import close_on_its_loop
from gateway.backends.sse import SSEDecoder, until_done
from gateway.backends.wire import CHAT, MalformedUpstream, WireRoute, status_error
from gateway.errors import UpstreamError, UpstreamTimeoutError
from gateway.models.registry import OpenAIEndpoint
from gateway.settings import Settings

# A non-streamed completion larger than this (after decompression) is refused.
MAX_BODY_BYTES = 32 << 20
# An error body is read only this far: its text is logged at DEBUG, never sent.
MAX_ERROR_BYTES = 64 << 10
# A request body above this is sent from a BytesIO, which aiohttp writes in chunks with the
# loop free between them; as raw bytes aiohttp warns (ResourceWarning) that it may block.
LARGE_BODY_BYTES = 1 << 20
# Idle pooled connections are dropped before the server's own keep-alive timeout (uvicorn,
# which serves vLLM and SGLang, closes them after 5 s): reusing one the server is closing
# fails the request with ServerDisconnectedError, and a POST is not retried.
KEEPALIVE_SECONDS = 3.0


class _Lease:
    """One request's hold on its endpoint's pool, from before its connection is taken to
    the release of its response; given back once."""

    __slots__ = ("_busy", "_key", "queued")

    def __init__(self, busy: dict[int, int], key: int, limit: int) -> None:
        held = busy.get(key, 0)
        busy[key] = held + 1
        self._busy: dict[int, int] | None = busy
        self._key = key
        # Every connection was held when the request came: it waited for a free one (and
        # the wait used up part of the connect timeout).
        self.queued = held >= limit

    def release(self) -> None:
        if self._busy is not None:
            self._busy[self._key] -= 1
            self._busy = None


class HttpPool:
    """Pooled aiohttp sessions, one per endpoint, each with its own bounded connector:
    the endpoint's `max_concurrency`, else `UPSTREAM_MAX_CONNECTIONS`. One endpoint's
    slow or hanging requests fill only its own pool, never another endpoint's (or
    model's). Created on first use, per event loop.

    The pool counts the requests that hold or wait for each endpoint's connections (a
    `_Lease` each), so that a connect timeout can tell a full pool (this process's load)
    from an unreachable server; aiohttp's request tracing would tell it too, at about
    20 us of CPU on every request."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._sessions: dict[int, tuple[OpenAIEndpoint, aiohttp.ClientSession]] = {}
        self._busy: dict[int, int] = {}  # per endpoint (its id): requests holding or waiting
        self._loop: asyncio.AbstractEventLoop | None = None
        # `connect` bounds the wait for a free slot plus the TCP connect; `sock_connect`
        # the TCP connect alone.
        self.timeout = aiohttp.ClientTimeout(
            total=None,
            connect=settings.upstream_connect_timeout,
            sock_connect=settings.upstream_connect_timeout,
            sock_read=settings.upstream_read_timeout,
        )

    def limit(self, upstream: OpenAIEndpoint) -> int:
        """How many connections this process may hold to `upstream` at once."""
        return upstream.max_concurrency or self._settings.upstream_max_connections

    def _bind(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._loop is not loop:  # sessions are bound to the loop that made them
            old, stale = self._loop, self._sessions
            self._sessions = {}
            self._busy = {}
            self._loop = loop
            if old is not None:
                for _, session in stale.values():
                    close_on_its_loop(session, old)

    def lease(self, upstream: OpenAIEndpoint) -> _Lease:
        """A request's hold on the endpoint's pool, taken before its connection is."""
        self._bind(asyncio.get_running_loop())
        return _Lease(self._busy, id(upstream), self.limit(upstream))

    def busy(self, upstream: OpenAIEndpoint) -> int:
        """Requests holding or waiting for one of the endpoint's connections."""
        return self._busy.get(id(upstream), 0)

    def session(self, upstream: OpenAIEndpoint) -> aiohttp.ClientSession:
        """The endpoint's own session (the same for each of its routes and models)."""
        self._bind(asyncio.get_running_loop())
        found = self._sessions.get(id(upstream))
        if found is not None and not found[1].closed:
            return found[1]
        connector = aiohttp.TCPConnector(
            limit=self.limit(upstream),
            ttl_dns_cache=300,
            keepalive_timeout=KEEPALIVE_SECONDS,
        )
        session = aiohttp.ClientSession(
            connector=connector,
            timeout=self.timeout,
            auto_decompress=True,
        )
        # The endpoint object is kept with its session, so its id is not reused.
        self._sessions[id(upstream)] = (upstream, session)
        return session

    @property
    def sessions(self) -> list[aiohttp.ClientSession]:
        """The sessions made so far on the current loop (one per endpoint used)."""
        return [session for _, session in self._sessions.values()]

    async def close(self) -> None:
        sessions, self._sessions = self._sessions, {}
        for _, session in sessions.values():
            if not session.closed:
                await session.close()


async def read_capped(response: aiohttp.ClientResponse, limit: int) -> bytes:
    """The (decompressed) body, refused past `limit`: aiohttp inflates piece by piece, so
    a compression bomb costs at most `limit` bytes of memory."""
    parts: list[bytes] = []
    size = 0
    async for piece in response.content.iter_any():
        size += len(piece)
        if size > limit:
            raise UpstreamError("The model endpoint sent a response over the size limit.")
        parts.append(piece)
    return b"".join(parts)


def _failed(exc: aiohttp.ClientError, queued: bool) -> UpstreamError:
    """The error for a request that got no response: a full pool, no connection, or a
    connection that broke before the answer."""
    if isinstance(exc, aiohttp.ConnectionTimeoutError) and queued:
        return PoolExhausted("No connection to the model endpoint became free in time.")
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return Unreachable("The model endpoint is unreachable: ConnectionTimeoutError")
    if isinstance(exc, aiohttp.ClientConnectorError):
        return Unreachable(f"The model endpoint is unreachable: {type(exc).__name__}")
    if isinstance(exc, TimeoutError):
        return UpstreamTimeoutError("The model endpoint timed out.")
    return UpstreamError(f"The model endpoint is unreachable: {type(exc).__name__}")


class OpenAIBackend:
    def __init__(
        self, *, upstream: OpenAIEndpoint, pool: HttpPool, route: WireRoute = CHAT
    ) -> None:
        self._upstream = upstream
        self._pool = pool
        self._route = route
        self._url = upstream.url_for(route.path)
        self._headers = {
            **upstream.headers,
            "Content-Type": "application/json",
            "Accept": "application/json",
        }
        api_key = upstream.api_key()
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"

    async def _post(
        self, body: dict[str, Any], headers: dict[str, str], lease: _Lease
    ) -> aiohttp.ClientResponse:
        """The response to a POST of `body` (status < 300). On any failure the lease is
        given back; on success the caller gives it back when the response is released."""
        try:
            # Redirects are never followed: they would re-send the body and the key.
            data = orjson.dumps(body)
            response = await self._pool.session(self._upstream).post(
                self._url,
                data=io.BytesIO(data) if len(data) > LARGE_BODY_BYTES else data,
                headers=headers,
                allow_redirects=False,
            )
        except aiohttp.ClientError as exc:
            lease.release()
            raise _failed(exc, lease.queued) from exc
        except BaseException:
            lease.release()
            raise
        if response.status >= 300:
            try:
                raw = await read_capped(response, MAX_ERROR_BYTES)
            except (aiohttp.ClientError, TimeoutError, UpstreamError):
                raw = b""
            finally:
                response.release()
                lease.release()
            raise status_error(response.status, raw, response.headers)
        return response

    async def complete(self, body: dict[str, Any]) -> dict[str, Any]:
        lease = self._pool.lease(self._upstream)
        try:
            response = await self._post(body, self._headers, lease)
            try:
                async with response:
                    raw = await read_capped(response, MAX_BODY_BYTES)
            finally:
                lease.release()
        except TimeoutError as exc:
            raise UpstreamTimeoutError("The model endpoint timed out.") from exc
        except aiohttp.ClientError as exc:
            raise UpstreamError(
                f"The model endpoint dropped the response: {type(exc).__name__}"
            ) from exc
        return self._route.parse_body(raw)

    async def open_stream(self, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        headers = {**self._headers, "Accept": "text/event-stream"}
        lease = self._pool.lease(self._upstream)
        try:
            response = await self._post(body, headers, lease)
        except TimeoutError as exc:
            raise UpstreamTimeoutError("The model endpoint timed out.") from exc
        if response.content_type != "text/event-stream":
            response.close()
            lease.release()
            raise MalformedUpstream("The model endpoint did not answer with an event stream.")
        return Chunks(self._events(response, lease), self._route.parse_chunk)

    async def _events(
        self, response: aiohttp.ClientResponse, lease: _Lease
    ) -> AsyncIterator[list[bytes]]:
        """Each read's complete events (their `data`), up to `[DONE]`."""
        finished = False
        decoder = SSEDecoder()
        try:
            async for piece in response.content.iter_any():
                events, done = until_done(decoder.feed(piece))
                if events:
                    yield events
                if done:
                    finished = True
                    return
            events, _ = until_done(decoder.close())
            if events:
                yield events
            finished = True
        except TimeoutError as exc:
            raise UpstreamTimeoutError("The model endpoint stopped sending tokens.") from exc
        except aiohttp.ClientError as exc:
            raise UpstreamError(
                f"The model endpoint dropped the stream: {type(exc).__name__}"
            ) from exc
        finally:
            if finished:
                response.release()
            else:
                response.close()  # cancels the generation upstream: the connection is dropped
            lease.release()
