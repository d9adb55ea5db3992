"""`GET /v1/usage`: the calling key's own usage, from the daily rollups (thin; the
work is in query.py)."""

from __future__ import annotations

from typing import Annotated

import anyio.to_thread
from fastapi import APIRouter, Query
from fastapi.responses import Response

from gateway.deps import CurrentKey, ResourcesDep
from gateway.http import json_response
from gateway.openapi import REQUIRES_KEY, errors
from gateway.usage.protocol import UsageReport
from gateway.usage.query import UsageQuery, usage_report

router = APIRouter(tags=["usage"])

_DAY = "YYYY-MM-DD (UTC)"


@router.get(
    "/v1/usage",
    summary="This key's usage by day, by model or by route, with its limits",
    description="The calling key's own usage from the daily rollups (never another key's), "
    "for `start`..`end` (at most 366 days), grouped by day, by model or by API route, "
    "with its limits and what is left of its monthly token budget.",
    response_model=UsageReport,
    responses=errors(400, 401, 500, 503),
    openapi_extra=REQUIRES_KEY,
)
@router.get("/usage", include_in_schema=False)
async def get_usage(
    key: CurrentKey,
    resources: ResourcesDep,
    start: Annotated[
        str | None, Query(description=f"first day, {_DAY}; default the 1st of end's month")
    ] = None,
    end: Annotated[str | None, Query(description=f"last day, {_DAY}; default today")] = None,
    group_by: Annotated[
        str | None, Query(description="`day` (default), `model` or `route`")
    ] = None,
) -> Response:
    query = UsageQuery(client=resources.aws.dynamodb, table=resources.settings.usage_table)
    body = await anyio.to_thread.run_sync(
        lambda: usage_report(
            query, resources.limits, key=key, start=start, end=end, group_by=group_by
        )
    )
    return json_response(body)
