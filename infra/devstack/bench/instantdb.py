"""The DynamoDB stand-in (`python -m devstack.bench --serve-instant-dynamodb PORT`)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp


def serve_instant_dynamodb(port: int, forward: str, latency_ms: float = 0.0) -> None:
    """Answer PutItem (the usage write) with success at once (or after `latency_ms`);
    forward every other call. GET /calls: the calls seen, by operation."""
    from aiohttp import web

    calls: dict[str, int] = {}

    async def handle(request: web.Request) -> web.StreamResponse:
        if request.method == "GET":
            if request.path == "/calls":
                return web.json_response({"calls": calls})
            return web.Response(text="ok")
        body = await request.read()
        operation = request.headers.get("X-Amz-Target", "").rpartition(".")[2]
        calls[operation] = calls.get(operation, 0) + 1
        if operation == "PutItem":
            if latency_ms > 0:
                await asyncio.sleep(latency_ms / 1000)
            return web.Response(body=b"{}", content_type="application/x-amz-json-1.0")
        headers = {k: v for k, v in request.headers.items() if k.lower() != "host"}
        session: aiohttp.ClientSession = request.app["session"]
        async with session.post(forward + request.path_qs, data=body, headers=headers) as resp:
            return web.Response(
                body=await resp.read(),
                status=resp.status,
                headers={"Content-Type": resp.headers.get("Content-Type", "")},
            )

    async def client(app: web.Application) -> AsyncIterator[None]:
        app["session"] = aiohttp.ClientSession()
        yield
        await app["session"].close()

    app = web.Application()
    app.cleanup_ctx.append(client)
    app.router.add_route("*", "/{tail:.*}", handle)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)
