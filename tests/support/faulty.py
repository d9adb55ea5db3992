"""Small OpenAI-compatible upstreams on 127.0.0.1 whose faults a test sets: an answer, a
status (with Retry-After), a hang before the first token, a stream that breaks midway.

Each counts the requests it received, so a test can tell which replica served what.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from aiohttp import web

from tests.support.servers import free_port


def _chunk(text: str, finish: str | None = None) -> bytes:
    data = {
        "id": "cmpl-1",
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": finish}],
    }
    return b"data: " + json.dumps(data).encode() + b"\n\n"


@dataclass
class FaultyUpstream:
    # "ok", "status" (answer `status`, with `retry_after` if set), "hang" (headers, then
    # nothing), "stall" (nothing at all, streamed or not), "midstream" (one chunk, then
    # the connection is dropped)
    mode: str = "ok"
    status: int = 503
    retry_after: str | None = None
    hits: int = 0
    url: str = ""
    models_calls: int = 0
    bodies: list[dict[str, object]] = field(default_factory=list)
    _hit: asyncio.Event = field(default_factory=asyncio.Event)

    async def received(self, count: int) -> None:
        """Return once `count` requests have arrived."""
        while self.hits < count:
            self._hit.clear()
            await self._hit.wait()

    async def chat(self, request: web.Request) -> web.StreamResponse:
        self.hits += 1
        self._hit.set()
        body = await request.json()
        self.bodies.append(body)
        if self.mode == "stall":
            await asyncio.sleep(30)
        if self.mode == "status":
            headers = {"Retry-After": self.retry_after} if self.retry_after else {}
            return web.json_response(
                {"error": {"message": "busy"}}, status=self.status, headers=headers
            )
        if not body.get("stream"):
            return web.json_response(
                {
                    "id": "cmpl-1",
                    "object": "chat.completion",
                    "choices": [
                        {"index": 0, "message": {"content": "hi"}, "finish_reason": "stop"}
                    ],
                    "usage": {"prompt_tokens": 3, "completion_tokens": 1},
                }
            )
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        if self.mode == "hang":
            await asyncio.sleep(30)
        await response.write(_chunk("hi"))
        if self.mode == "midstream":
            assert request.transport is not None
            request.transport.close()
            return response
        await response.write(_chunk("", "stop"))
        await response.write(b"data: [DONE]\n\n")
        return response

    async def health(self, request: web.Request) -> web.Response:
        if self.mode == "no_health_route":  # llama.cpp before /health, some proxies
            return web.Response(status=404)
        return web.Response(status=200 if self.mode == "ok" else 503)

    async def models(self, request: web.Request) -> web.Response:
        self.models_calls += 1
        return web.json_response({"object": "list", "data": [{"id": "m", "object": "model"}]})


@asynccontextmanager
async def faulty_upstreams(count: int) -> AsyncIterator[list[FaultyUpstream]]:
    """`count` upstreams served on this event loop, stopped on exit."""
    runners: list[web.AppRunner] = []
    upstreams = [FaultyUpstream() for _ in range(count)]
    try:
        for upstream in upstreams:
            app = web.Application()
            app.router.add_post("/v1/chat/completions", upstream.chat)
            app.router.add_get("/health", upstream.health)
            app.router.add_get("/v1/models", upstream.models)
            runner = web.AppRunner(app, shutdown_timeout=0.1)
            await runner.setup()
            port = free_port()
            await web.TCPSite(runner, "127.0.0.1", port).start()
            runners.append(runner)
            upstream.url = f"http://127.0.0.1:{port}"
        yield upstreams
    finally:
        for runner in runners:
            await runner.cleanup()


def refused_url() -> str:
    """A URL nothing listens on: connecting is refused at once."""
    return f"http://127.0.0.1:{free_port()}"
