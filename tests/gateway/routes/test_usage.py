"""`GET /v1/usage` over real HTTP: the calling key's own rollups, and 400s for bad ranges.

The app is the real one (`create_app`, moto's DynamoDB server) but with no models
configured: this route never calls an upstream, so it needs neither the simulated GPU
endpoint nor tokenizers.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import httpx
import pytest
from gateway.app import create_app
from gateway.routes.usage import router
from gateway.settings import Settings
from gateway.usage import UsageRecord, UsageStatus
from gateway.usage.query import ROLLUPS_NOTE

from tests.conftest import Gateway
from tests.support.records import usage_record
from tests.support.servers import serve_asgi
from tests.support.usage import drain


@pytest.fixture(scope="module")
def gw(dynamodb: str) -> Iterator[Gateway]:
    app = create_app(Settings(key_cache_ttl_seconds=0, dynamodb_read_timeout=10))
    if not any(getattr(route, "path", None) == "/v1/usage" for route in app.routes):
        app.include_router(router)  # until app.py includes it
    with serve_asgi(app) as url:
        yield Gateway(url=url, resources=app.state.resources)


def get(gw: Gateway, secret: str | None, **params: str) -> httpx.Response:
    drain(boto3.client("dynamodb"))  # the aggregator has caught up (rollups lag seconds)
    headers = {"Authorization": f"Bearer {secret}"} if secret else {}
    return httpx.get(f"{gw.base_url}/usage", params=params, headers=headers, timeout=10)


def record(key_id: str, created_at: datetime, **kw: Any) -> UsageRecord:
    return usage_record(**{"key_id": key_id, "created_at": created_at, **kw})


def test_a_key_sees_its_own_usage_by_day(gw: Gateway) -> None:
    mine = gw.new_key(rpm=30, monthly_tokens=1000)
    theirs = gw.new_key()
    my_id, their_id = gw.key_id(mine), gw.key_id(theirs)
    for rec in (
        record(my_id, datetime(2026, 3, 1, 9, tzinfo=UTC)),
        record(my_id, datetime(2026, 3, 2, 9, tzinfo=UTC)),
        record(my_id, datetime(2026, 3, 2, 10, tzinfo=UTC), status=UsageStatus.UPSTREAM_ERROR),
        record(my_id, datetime(2026, 3, 9, tzinfo=UTC)),  # after `end`
        record(their_id, datetime(2026, 3, 2, 9, tzinfo=UTC), prompt_tokens=500),
    ):
        gw.resources.usage.write(rec)

    # A key_id parameter is not a thing: the key is the one that authenticates.
    response = get(gw, mine, start="2026-03-01", end="2026-03-08", key_id=their_id)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body == {
        "object": "usage",
        "key_id": my_id,
        "start": "2026-03-01",
        "end": "2026-03-08",
        "group_by": "day",
        "data": [
            {"date": "2026-03-01", "requests": 1, "prompt_tokens": 10, "completion_tokens": 5,
             "total_tokens": 15, "errors": 0, "rate_limited": 0,
             "cached_tokens": 0},
            {"date": "2026-03-02", "requests": 2, "prompt_tokens": 20, "completion_tokens": 10,
             "total_tokens": 30, "errors": 1, "rate_limited": 0,
             "cached_tokens": 0},
        ],
        "totals": {"requests": 3, "prompt_tokens": 30, "completion_tokens": 15,
                   "total_tokens": 45, "errors": 1, "rate_limited": 0,
             "cached_tokens": 0},
        "limits": {"rpm": 30, "tpm": None, "monthly_tokens": 1000},
        "month": {"month": datetime.now(UTC).strftime("%Y-%m"), "used_tokens": 0,
                  "remaining_tokens": 1000},
        "note": ROLLUPS_NOTE,
    }  # fmt: skip

    theirs_body = get(gw, theirs, start="2026-03-01", end="2026-03-08").json()
    assert theirs_body["key_id"] == their_id
    assert [(d["date"], d["prompt_tokens"]) for d in theirs_body["data"]] == [("2026-03-02", 500)]


def test_defaults_to_this_month_and_counts_it(gw: Gateway) -> None:
    secret = gw.new_key(monthly_tokens=100)
    key_id = gw.key_id(secret)
    now = datetime.now(UTC)
    gw.resources.usage.write(record(key_id, now))
    gw.resources.usage.write(record(key_id, now.replace(day=1) - timedelta(days=1)))  # last month

    body = get(gw, secret).json()
    today = now.date()
    assert (body["start"], body["end"]) == (today.replace(day=1).isoformat(), today.isoformat())
    assert [d["date"] for d in body["data"]] == [today.isoformat()]
    assert body["month"] == {"month": now.strftime("%Y-%m"), "used_tokens": 15,
                             "remaining_tokens": 85}  # fmt: skip


def test_group_by_model(gw: Gateway) -> None:
    mine, theirs = gw.new_key(), gw.new_key()
    my_id, their_id = gw.key_id(mine), gw.key_id(theirs)
    for rec in (
        record(my_id, datetime(2026, 4, 1, tzinfo=UTC)),
        record(my_id, datetime(2026, 4, 2, tzinfo=UTC)),
        record(my_id, datetime(2026, 4, 2, tzinfo=UTC), model="llama3", prompt_tokens=7),
        record(their_id, datetime(2026, 4, 2, tzinfo=UTC), model="mistral"),
    ):
        gw.resources.usage.write(rec)

    response = get(gw, mine, start="2026-04-01", end="2026-04-30", group_by="model")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["group_by"] == "model"
    assert body["data"] == [
        {"model": "llama3", "requests": 1, "prompt_tokens": 7, "completion_tokens": 5,
         "total_tokens": 12, "errors": 0, "rate_limited": 0,
             "cached_tokens": 0},
        {"model": "qwen3", "requests": 2, "prompt_tokens": 20, "completion_tokens": 10,
         "total_tokens": 30, "errors": 0, "rate_limited": 0,
             "cached_tokens": 0},
    ]  # fmt: skip
    assert body["totals"]["total_tokens"] == 42


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"start": "2026-02-30"}, "start"),
        ({"start": "March 1"}, "start"),
        ({"end": "2026-03-01T00:00:00Z"}, "end"),
        ({"start": "2026-03-02", "end": "2026-03-01"}, "start"),
        ({"start": "2024-01-01", "end": "2026-01-01"}, "end"),
        ({"group_by": "hour"}, "group_by"),
    ],
)
def test_bad_parameters_are_400_in_the_error_envelope(
    gw: Gateway, params: dict[str, str], param: str
) -> None:
    response = get(gw, gw.new_key(), **params)
    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["type"], error["param"]) == ("invalid_request_error", param)
    assert error["message"]


def test_needs_a_valid_key(gw: Gateway) -> None:
    assert get(gw, None).status_code == 401
    assert get(gw, "sk-gw-not-a-key").status_code == 401
    secret = gw.new_key()
    gw.resources.keys.revoke(key_id=gw.key_id(secret))
    assert get(gw, secret).status_code == 401
