"""A client that leaves while its admission is on its way (DynamoDB paused): the admission is
cancelled at once, but its update still lands when DynamoDB answers. The request's record
must carry the admission unconfirmed, so that the aggregator refunds it: the key's month
counter then equals its records (`make chaos`'s "month counters = records", issue 27).

A real gateway on 127.0.0.1, on the local DynamoDB server with its faults API (a pause holds
every call until resumed); the client leaves by closing its connection."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from devstack.dynamodb import FaultControl
from gateway.layout import month_sk
from gateway.limits.items import marker_attribute, month_of
from gateway.usage import UsageStatus, UsageStore
from gateway.usage.aggregate import Aggregator

from tests.conftest import Gateway, running_gateway
from tests.support.aws import moto_dynamodb
from tests.support.usage import TABLE

BUDGET = 100_000


@pytest.fixture(scope="module")
def stack(tokenizers_dir: Path, sim_url: str) -> Iterator[tuple[Gateway, FaultControl, Any]]:
    # Keys stay cached through the pause: only admission waits on DynamoDB. The gateway's
    # read timeout is well past the client's wait plus the pause, so the client's leaving
    # (not a DynamoDB timeout) is what the gateway sees first.
    settings = {"key_cache_ttl_seconds": 30, "dynamodb_read_timeout": 5.0}
    with (
        moto_dynamodb() as endpoint,
        running_gateway(tokenizers_dir, sim_url, **settings) as gw,
        closing(boto3.client("dynamodb")) as client,
    ):
        yield gw, FaultControl(endpoint), client


def month_item(client: Any, key_id: str) -> dict[str, Any]:
    key = {"pk": {"S": f"key#{key_id}"}, "sk": {"S": month_sk(month_of(time.time()))}}
    response = client.get_item(TableName=TABLE, Key=key, ConsistentRead=True)
    return dict(response.get("Item", {}))


def wait_for(what: str, probe: Any, *, seconds: float = 60.0) -> Any:
    """Poll `probe` until it returns something truthy (a bound, not a measurement)."""
    deadline = time.monotonic() + seconds
    while not (found := probe()):
        assert time.monotonic() < deadline, f"never: {what}"
        time.sleep(0.1)
    return found


def chat(max_tokens: int) -> dict[str, Any]:
    return {
        "model": "qwen3",
        "messages": [{"role": "user", "content": "Hello there"}],
        "max_tokens": max_tokens,
    }


def test_a_client_gone_during_admission_leaves_its_reservation_settled(
    stack: tuple[Gateway, FaultControl, Any],
) -> None:
    gw, faults, client = stack
    secret = gw.new_key(monthly_tokens=BUDGET)
    key_id = gw.key_id(secret)
    headers = {"Authorization": f"Bearer {secret}"}
    warm = httpx.post(gw.url + "/v1/chat/completions", json=chat(8), headers=headers, timeout=60)
    assert warm.status_code == 200  # the key is cached now

    with faults.paused():
        with pytest.raises(httpx.ReadTimeout):  # the client leaves: its connection closes
            httpx.post(
                gw.url + "/v1/chat/completions", json=chat(500), headers=headers, timeout=0.5
            )
        time.sleep(0.5)  # the gateway notices while DynamoDB is still paused

    usage = UsageStore(client=client, table=TABLE, retention_days=30)
    records = wait_for("both records", lambda: len(r := usage.query(key_id=key_id)) == 2 and r)
    [left] = [r for r in records if r.request_id != warm.headers["x-request-id"]]
    assert left.status is UsageStatus.CLIENT_DISCONNECTED and left.total_tokens == 0
    # The cancelled admission's update lands once DynamoDB answers, marked with its id.
    marker = marker_attribute(left.request_id)
    wait_for("the admission landing", lambda: marker in month_item(client, key_id))

    Aggregator(client=client, table=TABLE).apply(records)
    item = month_item(client, key_id)
    assert int(item["tokens"]["N"]) == sum(r.total_tokens for r in records)
    assert marker not in item
    # Settled as an unconfirmed admission: the record carried it, with when it was sent.
    assert left.reserved_unconfirmed_ms is not None and left.reserved_tokens > 500
