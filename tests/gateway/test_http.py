"""MeteredRoute: request-only endpoints are called directly, everything else as FastAPI does."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import Response
from fastapi.routing import APIRoute
from gateway.http import MeteredRoute, json_response


class Refused(Exception):
    pass


def build(route_class: type[APIRoute]) -> tuple[FastAPI, APIRouter, list[str]]:
    solved: list[str] = []

    async def dependency(request: Request) -> str:
        solved.append(request.url.path)
        return "solved"

    router = APIRouter(route_class=route_class)

    @router.post("/direct", summary="Direct", responses={418: {"description": "teapot"}})
    async def direct(request: Request) -> Response:
        body = await request.body()
        if body == b"refuse":
            raise Refused
        return json_response({"body": body.decode(), "path": request.url.path})

    @router.get("/items/{item_id}")
    async def item(item_id: int, tag: str = "x", dep: str = Depends(dependency)) -> Response:
        return json_response({"item_id": item_id, "tag": tag, "dep": dep})

    app = FastAPI()

    async def on_refused(request: Request, exc: Exception) -> Response:
        return json_response({"error": "refused"}, status_code=403)

    app.add_exception_handler(Refused, on_refused)
    app.include_router(router)
    return app, router, solved


def call(app: FastAPI, method: str, url: str, **kwargs: Any) -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return await client.request(method, url, **kwargs)

    return asyncio.run(go())


def test_a_request_only_endpoint_is_the_route_handler() -> None:
    app, router, _ = build(MeteredRoute)
    routes = {r.path: r for r in router.routes if isinstance(r, MeteredRoute)}
    assert len(routes) == 2
    assert routes["/direct"].get_route_handler() is routes["/direct"].endpoint
    assert routes["/items/{item_id}"].get_route_handler() is not routes["/items/{item_id}"].endpoint

    answer = call(app, "POST", "/direct", content=b"hello")
    assert (answer.status_code, answer.json()) == (200, {"body": "hello", "path": "/direct"})
    refused = call(app, "POST", "/direct", content=b"refuse")  # the app's handlers still apply
    assert (refused.status_code, refused.json()) == (403, {"error": "refused"})


def test_other_endpoints_keep_fastapis_parameters_and_dependencies() -> None:
    app, _, solved = build(MeteredRoute)
    answer = call(app, "GET", "/items/7", params={"tag": "t"})
    assert answer.json() == {"item_id": 7, "tag": "t", "dep": "solved"}
    assert solved == ["/items/7"]
    assert call(app, "GET", "/items/seven").status_code == 422


def test_the_openapi_document_is_the_same_as_with_apiroute() -> None:
    metered, _, _ = build(MeteredRoute)
    plain, _, _ = build(APIRoute)
    assert metered.openapi() == plain.openapi()
    assert "/direct" in metered.openapi()["paths"]
