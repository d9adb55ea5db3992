"""The aggregator: rollups equal the sum of the raw records, reservations settle exactly,
and a replayed or overlapping batch changes nothing. Through the Lambda handlers, with
the event shapes Lambda delivers (devstack.streams builds them from moto's stream)."""

from __future__ import annotations

import base64
import gzip
import json
import logging
from collections import Counter
from typing import Any

import pytest
from botocore.exceptions import ClientError
from devstack.streams import LogSubscription
from gateway.usage import UsageRecord, UsageStatus, UsageStore
from gateway.usage.aggregate import (
    MAX_TRANSACT_ITEMS,
    AggregationError,
    Aggregator,
    plan,
    rollup_keys,
)
from gateway.usage.batches import aggregate, write_back

from tests.gateway.usage.test_replay import unwritten_log_lines
from tests.support.records import usage_record
from tests.support.usage import TABLE, poller

MINUTE = 29_000_000
ROUTES = ("chat", "completions", "embeddings")


@pytest.fixture
def client(mock_dynamodb: Any) -> Any:
    return mock_dynamodb


def item(client: Any, pk: str, sk: str) -> dict[str, int]:
    got = client.get_item(TableName=TABLE, Key={"pk": {"S": pk}, "sk": {"S": sk}})
    return {k: int(v["N"]) for k, v in got.get("Item", {}).items() if "N" in v}


def records(n: int, **kw: Any) -> list[UsageRecord]:
    return [
        usage_record(
            request_id=f"r{i}", key_id=f"key_{i % 7}", model=f"m{i % 3}",
            prompt_tokens=i, completion_tokens=2 * i,
            status=UsageStatus.UPSTREAM_ERROR if i % 5 == 0 else UsageStatus.COMPLETED,
            reserved_tokens=100, reserved_month="2026-11", **kw,
        )
        for i in range(n)
    ]  # fmt: skip


def expected_rollups(recs: list[UsageRecord]) -> dict[tuple[str, str], Counter[str]]:
    sums: dict[tuple[str, str], Counter[str]] = {}
    for r in recs:
        for key in rollup_keys(r):
            sums.setdefault(key, Counter()).update(
                requests=1, prompt_tokens=r.prompt_tokens, completion_tokens=r.completion_tokens,
                total_tokens=r.total_tokens, errors=int(r.is_error),
                rate_limited=int(r.status == "rate_limited"), cached_tokens=r.cached_tokens or 0,
            )  # fmt: skip
    return sums


def test_plans_stay_within_the_transaction_limit() -> None:
    chunks = plan(records(300), current_minute=MINUTE)
    assert all(c.size() <= MAX_TRANSACT_ITEMS for c in chunks)
    assert sum(len(c.records) for c in chunks) == 300
    # One key, one model, one route: 96 records share 4 rollups (key/day, model/day,
    # key/model/day, key/route/day; no settling: none reserved).
    hot = [usage_record(request_id=f"h{i}") for i in range(200)]
    assert [len(c.records) for c in plan(hot, current_minute=MINUTE)] == [96, 96, 8]
    # Three routes: two more route rollups in each transaction.
    mixed = [usage_record(request_id=f"x{i}", route=ROUTES[i % 3]) for i in range(200)]
    chunks = plan(mixed, current_minute=MINUTE)
    assert [len(c.records) for c in chunks] == [94, 94, 12]
    assert [c.size() for c in chunks] == [100, 100, 18]


def test_route_rollups_count_each_record_once(client: Any) -> None:
    store = UsageStore(client=client, table=TABLE, retention_days=30)
    recs = [
        usage_record(
            request_id=f"q{i}", key_id=f"key_{i % 2}", route=ROUTES[i % 3],
            prompt_tokens=3 * i, completion_tokens=0 if ROUTES[i % 3] == "embeddings" else i,
            status=UsageStatus.UPSTREAM_ERROR if i % 4 == 0 else UsageStatus.COMPLETED,
        )
        for i in range(240)
    ]  # fmt: skip
    for r in recs:
        store.write(r)
    stream = poller(client)
    stream.drain()
    event = stream.last_event
    assert event is not None

    def route_rollups() -> dict[tuple[str, str], dict[str, int]]:
        return {
            (key, route): item(client, f"key#{key}", f"rday#2026-11-22#{route}")
            for key in ("key_0", "key_1")
            for route in ROUTES
        }

    expected: dict[tuple[str, str], Counter[str]] = {}
    for r in recs:  # summed here from the records' own fields, not through rollup_keys
        expected.setdefault((r.key_id, r.route), Counter()).update(
            requests=1, prompt_tokens=r.prompt_tokens, completion_tokens=r.completion_tokens,
            total_tokens=r.prompt_tokens + r.completion_tokens,
            errors=int(r.status is UsageStatus.UPSTREAM_ERROR), rate_limited=0, cached_tokens=0,
        )  # fmt: skip
    counted = route_rollups()
    assert counted == {k: dict(v) for k, v in expected.items()}
    # A route's rollups add up to the key's daily rollup.
    for key in ("key_0", "key_1"):
        day = item(client, f"key#{key}", "day#2026-11-22")
        assert day == {n: sum(counted[(key, r)][n] for r in ROUTES) for n in counted[(key, "chat")]}
    # The same batch again, and a batch overlapping it: nothing is counted twice.
    aggregator = Aggregator(client=client, table=TABLE)
    assert aggregate(event, aggregator=aggregator) == {"batchItemFailures": []}
    overlap = {"Records": event["Records"][200:] + event["Records"][:50]}
    assert aggregate(overlap, aggregator=aggregator) == {"batchItemFailures": []}
    assert route_rollups() == counted


def test_stream_batches_add_up_exactly_and_replays_change_nothing(client: Any) -> None:
    store = UsageStore(client=client, table=TABLE, retention_days=30)
    recs = records(150)
    for r in recs:
        store.write(r)
    stream = poller(client)
    stream.drain()
    first_event = stream.last_event
    assert first_event is not None and len(first_event["Records"]) == 150
    [one] = first_event["Records"][:1]
    assert one["eventSource"] == "aws:dynamodb" and one["eventName"] == "INSERT"
    assert one["eventSourceARN"].startswith("arn:aws:dynamodb:")

    def snapshot() -> dict[tuple[str, str], dict[str, int]]:
        keys = list(expected_rollups(recs)) + [(f"key#key_{i}", "month#2026-11") for i in range(7)]
        return {k: item(client, *k) for k in keys}

    settled = snapshot()
    for key, sums in expected_rollups(recs).items():
        assert settled[key] == dict(sums), key
    for i in range(7):  # each record settled its 100 reserved tokens once
        mine = [r for r in recs if r.key_id == f"key_{i}"]
        used = sum(r.total_tokens for r in mine) - 100 * len(mine)
        assert settled[(f"key#key_{i}", "month#2026-11")] == {"tokens": used}

    # Lambda retries the same batch, or a later one overlapping it: nothing changes.
    aggregator = Aggregator(client=client, table=TABLE)
    assert aggregate(first_event, aggregator=aggregator) == {"batchItemFailures": []}
    overlap = {"Records": first_event["Records"][100:] + first_event["Records"][:10]}
    assert aggregate(overlap, aggregator=aggregator) == {"batchItemFailures": []}
    assert snapshot() == settled


def test_a_failing_transaction_reports_the_records_from_it_on(client: Any) -> None:
    store = UsageStore(client=client, table=TABLE, retention_days=30)
    recs = records(150)
    for r in recs:
        store.write(r)
    calls = Counter[str]()

    class SecondFails:
        def transact_write_items(self, **kw: Any) -> Any:
            calls["transact"] += 1
            if calls["transact"] >= 2:
                raise ClientError({"Error": {"Code": "ValidationException"}}, "TransactWriteItems")
            return client.transact_write_items(**kw)

    stream = poller(client)
    failing = Aggregator(client=SecondFails(), table=TABLE)  # type: ignore[arg-type]
    responses: list[dict[str, Any]] = []
    stream._handler = lambda event: (
        responses.append(aggregate(event, aggregator=failing)) or responses[-1]
    )
    stream.poll()
    assert stream.last_event is not None
    events = stream.last_event["Records"]
    [first_chunk, *_] = plan(recs, current_minute=MINUTE)
    counted = len(first_chunk.records)
    failed = [f["itemIdentifier"] for f in responses[0]["batchItemFailures"]]
    assert failed == [e["dynamodb"]["SequenceNumber"] for e in events[counted:]]
    # Lambda resumes at the first failure: with a healthy table, everything ends exact.
    stream._handler = lambda event: aggregate(
        event, aggregator=Aggregator(client=client, table=TABLE)
    )
    stream.drain()
    for key, sums in expected_rollups(recs).items():
        assert item(client, *key) == dict(sums), key


def test_log_lines_are_written_back_once(client: Any, caplog: pytest.LogCaptureFixture) -> None:
    lost = usage_record(request_id="lost", reserved_tokens=50, reserved_month="2026-11")
    lines = ["START RequestId: x", *unwritten_log_lines(lost), "not json"]
    subscription = LogSubscription(handler=lambda e: write_back(e, store=store))
    store = UsageStore(client=client, table=TABLE, retention_days=30)
    assert subscription.deliver(lines) == {"written": 1, "already_present": 0, "unreadable": 0}
    assert subscription.deliver(lines) == {"written": 0, "already_present": 1, "unreadable": 0}
    assert store.get(request_id="lost") == lost
    # The event is CloudWatch Logs' shape: base64 of gzip of JSON with logEvents.
    captured: list[dict[str, Any]] = []
    LogSubscription(handler=lambda e: captured.append(e) or {}).deliver(lines)
    data = json.loads(gzip.decompress(base64.b64decode(captured[0]["awslogs"]["data"])))
    assert data["messageType"] == "DATA_MESSAGE" and len(data["logEvents"]) == 1
    with caplog.at_level(logging.INFO):
        poller(client).drain()
    assert item(client, "key#key_a", "month#2026-11") == {"tokens": 15 - 50}


def _cancelled(*codes: str) -> ClientError:
    return ClientError(
        {
            "Error": {"Code": "TransactionCanceledException", "Message": "cancelled"},
            "CancellationReasons": [{"Code": code} for code in codes],
        },
        "TransactWriteItems",
    )


def test_transient_failures_are_retried_as_aws_maps_them(client: Any) -> None:
    """A conflict with another transaction (cancellation reason) or throttling (error
    code) is retried after a pause (gateway.aws's mapping and retry); a record counted
    meanwhile is dropped, not counted twice; a lasting throttle fails the batch."""
    store = UsageStore(client=client, table=TABLE, retention_days=30)
    recs = records(3)
    for r in recs:
        store.write(r)
    Aggregator(client=client, table=TABLE, clock=lambda: MINUTE * 60.0).apply(recs[:1])
    faults = [
        _cancelled("None", "None", "None", "TransactionConflict"),
        ClientError({"Error": {"Code": "ThrottlingException"}}, "TransactWriteItems"),
    ]

    class Flaky:
        def transact_write_items(self, **kw: Any) -> Any:
            if faults:
                raise faults.pop(0)
            return client.transact_write_items(**kw)

    pauses: list[float] = []
    flaky = Aggregator(
        client=Flaky(),  # type: ignore[arg-type]
        table=TABLE,
        clock=lambda: MINUTE * 60.0,
        sleep=pauses.append,
    )
    result = flaky.apply(recs)
    assert (result.counted, result.already, result.transactions) == (2, 1, 1)
    assert len(pauses) == 2
    for key, sums in expected_rollups(recs).items():
        assert item(client, *key) == dict(sums), key

    class Throttled:
        def transact_write_items(self, **kw: Any) -> Any:
            raise ClientError({"Error": {"Code": "ThrottlingException"}}, "TransactWriteItems")

    pauses.clear()
    throttled = Aggregator(client=Throttled(), table=TABLE, sleep=pauses.append)  # type: ignore[arg-type]
    with pytest.raises(AggregationError, match="ThrottlingException") as info:
        throttled.apply(records(2))
    assert info.value.index == 0
    assert pauses and max(pauses) <= 1.6  # every pause taken, each at most the longest
