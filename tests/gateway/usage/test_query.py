"""Rollup reads: day ranges on the key's and the model's rollups, per-model totals, the
`GET /v1/usage` body and its validation.

On moto's server (the session's `dynamodb` fixture), each test with its own key ids and
model names.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import boto3
import pytest
from devstack.tables import LOCAL_TABLE_NAMES
from gateway.errors import InvalidRequestError
from gateway.keys.apikey import ApiKey
from gateway.limits import LimitStore
from gateway.usage import UsageRecord, UsageStatus, UsageStore
from gateway.usage.query import Totals, UsageQuery, usage_report

from tests.support.records import usage_record
from tests.support.usage import drain

TABLE = LOCAL_TABLE_NAMES["UsageTable"]


@pytest.fixture
def client(dynamodb: str) -> Iterator[Any]:
    with closing(boto3.client("dynamodb")) as made:
        yield made


@dataclass
class Names:
    """Key ids and model names no other test uses (the tables are shared)."""

    key_a: str
    key_b: str
    qwen: str
    llama: str
    odd: str


@pytest.fixture
def n() -> Names:
    u = uuid.uuid4().hex[:8]
    return Names(f"key_a-{u}", f"key_b-{u}", f"qwen3-{u}", f"llama3-{u}", f"org/m#x#y-{u}")


def record(n: Names, request_id: str, day: int, **kw: Any) -> UsageRecord:
    return usage_record(
        **{
            "request_id": f"{request_id}-{n.key_a}",
            "key_id": n.key_a,
            "model": n.qwen,
            "created_at": datetime(2026, 11, day, 10, tzinfo=UTC),
            **kw,
        }
    )


def test_key_and_model_days_read_only_their_range(client: Any, n: Names) -> None:
    store = UsageStore(client=client, table=TABLE, retention_days=30)
    query = UsageQuery(client=client, table=TABLE)
    for i, day in enumerate((1, 2, 2, 5, 30)):
        store.write(record(n, f"r{i}", day))
    store.write(record(n, "err", 2, status=UsageStatus.UPSTREAM_ERROR, completion_tokens=0))
    store.write(record(n, "other-key", 2, key_id=n.key_b))
    store.write(record(n, "other-model", 2, model=n.llama))
    # A limits item under the same partition (gateway.limits' monthly budget counter).
    client.put_item(
        TableName=TABLE,
        Item={"pk": {"S": f"key#{n.key_a}"}, "sk": {"S": "month#2026-11"}, "tokens": {"N": "999"}},
    )
    drain(client)

    days = query.key_days(key_id=n.key_a, start=date(2026, 11, 2), end=date(2026, 11, 5))
    assert [d.to_dict() for d in days] == [
        {"date": "2026-11-02", "requests": 4, "prompt_tokens": 40, "completion_tokens": 15,
         "total_tokens": 55, "errors": 1, "rate_limited": 0, "cached_tokens": 0},
        {"date": "2026-11-05", "requests": 1, "prompt_tokens": 10, "completion_tokens": 5,
         "total_tokens": 15, "errors": 0, "rate_limited": 0, "cached_tokens": 0},
    ]  # fmt: skip
    everything = query.key_days(key_id=n.key_a)
    assert [d.date for d in everything] == ["2026-11-01", "2026-11-02", "2026-11-05", "2026-11-30"]
    assert [d.date for d in query.key_days(key_id=n.key_a, end=date(2026, 11, 1))] == ["2026-11-01"]
    # Neither the raw records nor the limits' items in the same partition are read.
    assert Totals.sum(d.totals for d in everything).requests == 7

    qwen = query.model_days(model=n.qwen, start=date(2026, 11, 2), end=date(2026, 11, 2))
    assert [(d.date, d.totals.requests) for d in qwen] == [("2026-11-02", 4)]  # key_b's too
    assert [d.totals.requests for d in query.model_days(model=n.llama)] == [1]
    assert query.model_days(model="nobody") == []


def test_key_month_sums_that_month_only(client: Any, n: Names) -> None:
    store = UsageStore(client=client, table=TABLE, retention_days=30)
    query = UsageQuery(client=client, table=TABLE)
    store.write(record(n, "oct", 1, created_at=datetime(2026, 10, 31, 23, 59, tzinfo=UTC)))
    store.write(record(n, "nov1", 1))
    store.write(record(n, "nov30", 30))
    store.write(record(n, "dec", 1, created_at=datetime(2026, 12, 1, tzinfo=UTC)))
    drain(client)
    totals = query.key_month(key_id=n.key_a, day=date(2026, 11, 15))
    assert totals == Totals(requests=2, prompt_tokens=20, completion_tokens=10, total_tokens=30)
    assert query.key_month(key_id=n.key_a, day=date(2026, 12, 31)).requests == 1


def test_key_models_sums_each_model_over_the_range(client: Any, n: Names) -> None:
    store = UsageStore(client=client, table=TABLE, retention_days=30)
    query = UsageQuery(client=client, table=TABLE)
    for rec in (
        record(n, "a", 1),
        record(n, "b", 2),
        record(n, "c", 2, model=n.llama, prompt_tokens=100),
        record(n, "d", 3, model=n.odd),
        record(n, "e", 9),  # outside the range
        record(n, "f", 2, key_id=n.key_b),  # another key
    ):
        store.write(rec)
    drain(client)
    got = query.key_models(key_id=n.key_a, start=date(2026, 11, 1), end=date(2026, 11, 3))
    assert [m.to_dict() for m in got] == [
        {"model": n.llama, "requests": 1, "prompt_tokens": 100, "completion_tokens": 5,
         "total_tokens": 105, "errors": 0, "rate_limited": 0, "cached_tokens": 0},
        {"model": n.odd, "requests": 1, "prompt_tokens": 10,
         "completion_tokens": 5, "total_tokens": 15, "errors": 0, "rate_limited": 0, "cached_tokens": 0},
        {"model": n.qwen, "requests": 2, "prompt_tokens": 20, "completion_tokens": 10,
         "total_tokens": 30, "errors": 0, "rate_limited": 0, "cached_tokens": 0},
    ]  # fmt: skip
    assert [m.model for m in query.key_models(key_id=n.key_a, start=date(2026, 11, 9))] == [n.qwen]


def test_write_keeps_the_key_and_model_rollup(client: Any, n: Names) -> None:
    store = UsageStore(client=client, table=TABLE, retention_days=30)
    store.write(record(n, "a", 1))
    store.write(record(n, "a", 1))  # idempotent
    store.write(record(n, "b", 1, model=n.llama))
    drain(client)
    got = UsageQuery(client=client, table=TABLE).key_models(key_id=n.key_a)
    assert [(m.model, m.totals.requests) for m in got] == [(n.llama, 1), (n.qwen, 1)]


def test_usage_report(client: Any, n: Names) -> None:
    store = UsageStore(client=client, table=TABLE, retention_days=30)
    query = UsageQuery(client=client, table=TABLE)
    limits = LimitStore(client=client, table=TABLE)
    key = ApiKey(key_id=n.key_a, key_hash="h", name="n", owner="o", rpm=5, monthly_tokens=40)
    for rec in (record(n, "a", 1), record(n, "b", 3), record(n, "c", 3, model=n.llama)):
        store.write(rec)
    drain(client)
    today = date(2026, 11, 3)

    body = usage_report(query, limits, key=key, today=today)
    assert body["object"] == "usage" and body["key_id"] == n.key_a
    assert (body["start"], body["end"], body["group_by"]) == ("2026-11-01", "2026-11-03", "day")
    assert [(d["date"], d["requests"]) for d in body["data"]] == [
        ("2026-11-01", 1),
        ("2026-11-03", 2),
    ]
    assert body["totals"] == {"requests": 3, "prompt_tokens": 30, "completion_tokens": 15,
                              "total_tokens": 45, "errors": 0, "rate_limited": 0, "cached_tokens": 0}  # fmt: skip
    assert body["limits"] == {"rpm": 5, "tpm": None, "monthly_tokens": 40}
    assert body["month"] == {"month": "2026-11", "used_tokens": 45, "remaining_tokens": 0}

    body = usage_report(
        query, limits, key=key, start="2026-11-02", end="2026-11-30", group_by="model", today=today
    )
    assert [(d["model"], d["total_tokens"]) for d in body["data"]] == [
        (n.llama, 15),
        (n.qwen, 15),
    ]
    assert body["totals"]["requests"] == 2

    # Only `end` given: its month; a key without a budget has no remaining figure.
    unlimited = ApiKey(key_id=n.key_a, key_hash="h", name="n", owner="o")
    body = usage_report(query, limits, key=unlimited, end="2026-10-20", today=today)
    assert (body["start"], body["data"]) == ("2026-10-01", [])
    assert body["month"] == {"month": "2026-11", "used_tokens": 45, "remaining_tokens": None}


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"start": "2026-13-01"}, "start"),
        ({"start": "20261101"}, "start"),
        ({"end": "yesterday"}, "end"),
        ({"start": "2026-11-05", "end": "2026-11-04"}, "start"),
        ({"start": "2025-11-02", "end": "2026-11-03"}, "end"),  # 367 days
        ({"group_by": "week"}, "group_by"),
        ({"group_by": ""}, "group_by"),
    ],
)
def test_usage_report_refuses_bad_parameters(params: dict[str, str], param: str) -> None:
    # Refused before any read: these stores have no client at all.
    query = UsageQuery(client=None, table=TABLE)  # type: ignore[arg-type]
    limits = LimitStore(client=None, table=TABLE)  # type: ignore[arg-type]
    key = ApiKey(key_id="key_a", key_hash="h", name="n", owner="o")
    with pytest.raises(InvalidRequestError) as caught:
        usage_report(query, limits, key=key, today=date(2026, 11, 3), **params)
    assert caught.value.param == param


def test_usage_report_allows_exactly_366_days(client: Any, n: Names) -> None:
    query = UsageQuery(client=client, table=TABLE)
    limits = LimitStore(client=client, table=TABLE)
    key = ApiKey(key_id=n.key_a, key_hash="h", name="n", owner="o")
    body = usage_report(query, limits, key=key, start="2025-11-03", end="2026-11-03")
    assert body["start"] == "2025-11-03"
