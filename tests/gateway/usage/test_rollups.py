"""After a randomized run through the gateway, the daily rollups equal the sum of the
raw records, per key and per model; and concurrent requests respect an rpm limit."""

from __future__ import annotations

import random
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from typing import Any

import boto3
import httpx

from tests.conftest import Gateway
from tests.support.minute import within_one_minute
from tests.support.usage import drain

MODELS = ["qwen3", "llama3", "tinyllama"]
COUNTERS = ("requests", "prompt_tokens", "completion_tokens", "total_tokens", "errors")


def rollup(table: str, pk: str, day: str) -> dict[str, int]:
    with closing(boto3.client("dynamodb")) as client:
        item = client.get_item(TableName=table, Key={"pk": {"S": pk}, "sk": {"S": f"day#{day}"}})[
            "Item"
        ]
    return {name: int(item[name]["N"]) for name in COUNTERS}


def test_rollups_equal_the_sum_of_raw_records(gateway: Gateway) -> None:
    rng = random.Random(20261122)
    keys = [gateway.new_key(), gateway.new_key(), gateway.new_key(rpm=40)]

    def one(i: int) -> int:
        key = rng.choice(keys)
        body: dict[str, Any] = {
            "model": rng.choice(MODELS),
            "messages": [{"role": "user", "content": "word " * rng.randint(1, 40)}],
            "max_tokens": rng.randint(1, 12),
            "stream": rng.random() < 0.5,
            "n": rng.choice([1, 1, 2]),
        }
        if rng.random() < 0.1:
            body["sim"] = {"fail_status": 500}
        elif rng.random() < 0.1:
            body["sim"] = {"fail_after_tokens": 2}
        response = httpx.post(
            gateway.base_url + "/chat/completions",
            json=body,
            headers={"Authorization": f"Bearer {key}"},
            timeout=30,
        )
        return response.status_code

    statuses = Counter(one(i) for i in range(240))
    assert statuses[200] > 100 and statuses[502] > 0 and statuses[429] > 0

    drain(boto3.client("dynamodb"))  # rollups are the aggregator's, seconds behind
    table = gateway.resources.settings.usage_table
    by_model: dict[tuple[str, str], Counter[str]] = {}
    for key in keys:
        per_day: dict[str, Counter[str]] = {}
        for record in gateway.records(key):
            values = {
                "requests": 1,
                "prompt_tokens": record.prompt_tokens,
                "completion_tokens": record.completion_tokens,
                "total_tokens": record.total_tokens,
                "errors": int(record.is_error),
            }
            per_day.setdefault(record.day, Counter()).update(values)
            by_model.setdefault((record.model, record.day), Counter()).update(values)
        for day, expected in per_day.items():
            assert rollup(table, f"key#{gateway.key_id(key)}", day) == dict(expected)
    assert sum(c["requests"] for c in by_model.values()) == 240
    # model rollups also hold other tests' traffic: they are at least this run's sums
    for (model, day), expected in by_model.items():
        got = rollup(table, f"model#{model}", day)
        assert all(got[name] >= expected[name] for name in COUNTERS)


def test_concurrent_requests_admit_exactly_the_rpm_limit(gateway: Gateway) -> None:
    body = {"model": "qwen3", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}

    def burst() -> tuple[str, Counter[int]]:  # in one minute window, from a fresh key
        key = gateway.new_key(rpm=10)

        def send(_: int) -> int:
            return httpx.post(
                gateway.base_url + "/chat/completions",
                json=body,
                headers={"Authorization": f"Bearer {key}"},
                timeout=30,
            ).status_code

        with ThreadPoolExecutor(max_workers=30) as pool:
            return key, Counter(pool.map(send, range(30)))

    key, statuses = within_one_minute(burst)
    assert statuses == Counter({200: 10, 429: 20})
    records = gateway.records(key)
    assert Counter(r.status for r in records) == Counter({"completed": 10, "rate_limited": 20})
