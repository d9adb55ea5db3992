"""OpenAI-compatible HTTP upstreams (vLLM, TGI's Messages API, SGLang, llama.cpp)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp
import orjson

from gateway.config import OpenAIUpstream
from gateway.errors import InvalidRequestError, UpstreamError, UpstreamTimeoutError
from gateway.settings import Settings
from gateway.upstream.base import parse_completion


class HttpPool:
    """One pooled aiohttp session per process (per event loop), created on first use."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.timeout = aiohttp.ClientTimeout(
            total=None,
            connect=settings.upstream_connect_timeout,
            sock_read=settings.upstream_read_timeout,
        )

    def session(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._session is None or self._session.closed or self._loop is not loop:
            connector = aiohttp.TCPConnector(
                limit=self._settings.upstream_max_connections, ttl_dns_cache=300
            )
            self._session = aiohttp.ClientSession(
                connector=connector, timeout=self.timeout, auto_decompress=True
            )
            self._loop = loop
        return self._session

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None


def _upstream_message(status: int, raw: bytes) -> str:
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        data = None
    if isinstance(data, dict):
        err = data.get("error", data)
        if isinstance(err, dict) and isinstance(err.get("message"), str):
            return str(err["message"])
        if isinstance(err, str):
            return err
    return f"upstream returned HTTP {status}"


def raise_for_upstream_status(
    status: int, raw: bytes, headers: Mapping[str, str] | None = None
) -> None:
    """The upstream's own verdict on a request it refused: its 4xx means the request is
    invalid (too long a prompt, say) and goes back as a 400; a 429 or 503 that says when
    to retry (Retry-After) goes back as that status with the same Retry-After, so clients
    back off and retry; anything else is a 502."""
    message = _upstream_message(status, raw)
    if status in (400, 413, 422):
        raise InvalidRequestError(message, code="upstream_rejected_request")
    retry_after = (headers or {}).get("Retry-After") or (headers or {}).get("retry-after")
    if status in (429, 503) and retry_after:
        raise UpstreamError(
            f"The model endpoint is busy: {message}",
            status_code=status,
            code="upstream_overloaded" if status == 503 else "upstream_rate_limited",
            headers={"Retry-After": retry_after},
        )
    raise UpstreamError(f"The model endpoint failed: {message}", code=f"upstream_http_{status}")


async def iter_sse_data(content: aiohttp.StreamReader) -> AsyncIterator[bytes]:
    """The `data` of each server-sent event, as bytes, until `[DONE]` or end of stream."""
    data: list[bytes] = []
    async for raw in content:
        line = raw.rstrip(b"\r\n")
        if not line:
            if data:
                payload = b"\n".join(data)
                data = []
                if payload == b"[DONE]":
                    return
                yield payload
            continue
        if line.startswith(b"data:"):
            data.append(line[6:] if line[5:6] == b" " else line[5:])
    if data and (payload := b"\n".join(data)) != b"[DONE]":
        yield payload


class OpenAIBackend:
    def __init__(self, *, upstream: OpenAIUpstream, pool: HttpPool) -> None:
        self._upstream = upstream
        self._pool = pool
        self._headers = {"Content-Type": "application/json", "Accept": "application/json"}
        api_key = upstream.api_key()
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"

    async def complete(self, body: dict[str, Any]) -> dict[str, Any]:
        try:
            async with self._pool.session().post(
                self._upstream.chat_url, data=orjson.dumps(body), headers=self._headers
            ) as response:
                raw = await response.read()
                if response.status >= 400:
                    raise_for_upstream_status(response.status, raw, response.headers)
        except TimeoutError as exc:
            raise UpstreamTimeoutError("The model endpoint timed out.") from exc
        except aiohttp.ClientError as exc:
            raise UpstreamError(f"The model endpoint is unreachable: {type(exc).__name__}") from exc
        return parse_completion(raw)

    async def open_stream(self, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        headers = {**self._headers, "Accept": "text/event-stream"}
        try:
            response = await self._pool.session().post(
                self._upstream.chat_url, data=orjson.dumps(body), headers=headers
            )
        except TimeoutError as exc:
            raise UpstreamTimeoutError("The model endpoint timed out.") from exc
        except aiohttp.ClientError as exc:
            raise UpstreamError(f"The model endpoint is unreachable: {type(exc).__name__}") from exc
        if response.status >= 400:
            try:
                raw = await response.read()
            except (aiohttp.ClientError, TimeoutError):
                raw = b""
            finally:
                response.release()
            raise_for_upstream_status(response.status, raw, response.headers)
        return self._chunks(response)

    async def _chunks(self, response: aiohttp.ClientResponse) -> AsyncIterator[dict[str, Any]]:
        finished = False
        try:
            async for payload in iter_sse_data(response.content):
                try:
                    chunk = orjson.loads(payload)
                except orjson.JSONDecodeError as exc:
                    raise UpstreamError("The model endpoint sent an invalid event.") from exc
                if isinstance(chunk, dict) and "error" in chunk:
                    raise UpstreamError(
                        f"The model endpoint failed mid-stream: {_upstream_message(500, payload)}"
                    )
                yield chunk
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
