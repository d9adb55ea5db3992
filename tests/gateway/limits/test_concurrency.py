"""Limits hold across instances: many threads, several clients, one moto server.

DynamoDB applies the writes to one item one at a time, each condition checked against the
item as the previous write left it. moto's server does not: its threaded request handlers
race inside UpdateItem (measured: 12 of 40 concurrent `requests < 10` updates admitted
when they create the item together). devstack.motofix, which the tests' moto server loads,
serializes moto's item writes (and UpdateItem's replies) to restore DynamoDB's guarantee;
everything else (HTTP, several clients, 40 threads released at once) is real, so a
read-then-write anywhere in admission would still over-admit here.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, closing, contextmanager
from typing import Any

import boto3
from botocore.config import Config
from devstack.tables import LOCAL_TABLE_NAMES
from gateway.errors import RateLimitError
from gateway.keys.apikey import ApiKey
from gateway.limits import Admission, LimitStore
from gateway.limits.store import month_of, month_sk, window_attributes, window_sk

TABLE = LOCAL_TABLE_NAMES["UsageTable"]
INSTANCES = 4


@contextmanager
def stores(now: float) -> Iterator[list[LimitStore]]:
    """One store per simulated Lambda instance, each with its own client (closed after)."""
    with ExitStack() as clients:
        yield [
            LimitStore(
                client=clients.enter_context(
                    closing(boto3.client("dynamodb", config=Config(max_pool_connections=50)))
                ),
                table=TABLE,
                clock=lambda: now,
            )
            for _ in range(INSTANCES)
        ]


def admit_all(stores: list[LimitStore], key: ApiKey, n: int, reserve: int) -> list[Any]:
    """n concurrent admissions, all released at once; each result an Admission or the 429."""
    start = threading.Barrier(n)

    def one(i: int) -> Any:
        start.wait()
        try:
            return stores[i % len(stores)].admit(key=key, reserve_tokens=reserve)
        except RateLimitError as exc:
            return exc

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(one, range(n)))


def counter(sk: str, key_id: str, name: str) -> int:
    with closing(boto3.client("dynamodb")) as client:
        item = client.get_item(
            TableName=TABLE,
            Key={"pk": {"S": f"key#{key_id}"}, "sk": {"S": sk}},
            ConsistentRead=True,
        )
    return int(item["Item"][name]["N"])


def new_key(**limits: Any) -> ApiKey:
    return ApiKey(
        key_id=f"key_{uuid.uuid4().hex[:12]}", key_hash="h", name="n", owner="o", **limits
    )


def test_rpm_admits_exactly_the_limit(dynamodb: str) -> None:
    now = 1_800_000_030.0
    key = new_key(rpm=10)
    with stores(now) as instances:
        results = admit_all(instances, key, 40, reserve=50)
    admitted = [r for r in results if isinstance(r, Admission)]
    refused = [r for r in results if isinstance(r, RateLimitError)]
    assert len(admitted) == 10 and len(refused) == 30
    assert sorted(a.headers["x-ratelimit-remaining-requests"] for a in admitted) == [
        str(i) for i in range(10)
    ]
    assert {r.headers["Retry-After"] for r in refused} == {"30"}
    assert counter(window_sk(int(now // 60)), key.key_id, "requests") == 10


def test_monthly_budget_is_never_overspent(dynamodb: str) -> None:
    now = 1_800_000_030.0
    key = new_key(monthly_tokens=1000)
    with stores(now) as instances:
        results = admit_all(instances, key, 30, reserve=100)
    assert sum(isinstance(r, Admission) for r in results) == 10
    assert counter(month_sk(month_of(now)), key.key_id, "tokens") == 1000


def test_refusals_consume_nothing_under_concurrency(dynamodb: str) -> None:
    """Window and budget together (one item, one update): a refusal counts nowhere."""
    now = 1_800_000_030.0
    key = new_key(rpm=25, tpm=100_000, monthly_tokens=1000)
    with stores(now) as instances:
        results = admit_all(instances, key, 30, reserve=100)
    assert sum(isinstance(r, Admission) for r in results) == 10
    requests, tokens = window_attributes(int(now // 60))
    month = month_sk(month_of(now))
    assert counter(month, key.key_id, requests) == 10
    assert counter(month, key.key_id, tokens) == 1000
    assert counter(month, key.key_id, "tokens") == 1000
