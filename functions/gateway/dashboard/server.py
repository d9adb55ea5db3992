"""The dashboard's HTTP side: the page, its vendored assets, and two data routes."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from gateway.aws import AwsClients
from gateway.dashboard.data import SPLITS, RollupReader, parse_range, read_report, report_csv
from gateway.dashboard.data import report_json as build_json
from gateway.errors import GatewayError, InvalidRequestError
from gateway.keys import KeyStore
from gateway.limits import LimitStore
from gateway.settings import Settings
from gateway.usage.query import utc_today

STATIC = Path(__file__).parent / "static"
# The page is served to this machine only: a DNS-rebinding page must not reach it.
LOCAL_HOSTS = ["127.0.0.1", "localhost", "[::1]"]


def create_dashboard_app(
    *, aws: AwsClients, settings: Settings, owner: str | None = None, today: date | None = None
) -> Starlette:
    """The dashboard app. `owner` limits it to that owner's keys; `today` is for tests."""
    reader = RollupReader(client=aws.dynamodb, table=settings.usage_table)
    keys = KeyStore(client=aws.dynamodb, table=settings.keys_table)
    limits = LimitStore(client=aws.dynamodb, table=settings.usage_table)

    def report(request: Request) -> Any:
        day = today or utc_today()
        params = request.query_params
        start, end = parse_range(params.get("start"), params.get("end"), today=day)
        return read_report(reader, keys, start=start, end=end, owner=owner), day

    async def page(_request: Request) -> Response:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})

    async def report_route(request: Request) -> Response:
        split = request.query_params.get("split", "key")
        if split not in SPLITS:
            return _error(InvalidRequestError(f"split is one of {', '.join(SPLITS)}."))
        try:
            found, day = await run_in_threadpool(report, request)
            body = await run_in_threadpool(build_json, found, limits, split=split, today=day)
        except GatewayError as exc:
            return _error(exc)
        return Response(orjson.dumps(body), media_type="application/json")

    async def csv_route(request: Request) -> Response:
        try:
            found, _ = await run_in_threadpool(report, request)
        except GatewayError as exc:
            return _error(exc)
        name = f"gateway-usage-{found.start}-{found.end}.csv"
        return Response(
            report_csv(found),
            media_type="text/csv",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )

    return Starlette(
        routes=[
            Route("/", page),
            Route("/api/report", report_route),
            Route("/api/usage.csv", csv_route),
            Mount("/static", StaticFiles(directory=STATIC), name="static"),
        ],
        middleware=[Middleware(TrustedHostMiddleware, allowed_hosts=LOCAL_HOSTS)],
    )


def _error(exc: GatewayError) -> Response:
    return Response(orjson.dumps(exc.to_dict()), exc.status_code, media_type="application/json")
