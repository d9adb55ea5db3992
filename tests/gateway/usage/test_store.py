"""Usage records: one idempotent PutItem each, a deadline, and the log line past it."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Any

import anyio
import pytest
from botocore.exceptions import ClientError
from devstack.tables import LOCAL_TABLE_NAMES
from gateway.usage import UsageRecord, UsageStatus, UsageStore
from gateway.usage.store import UNWRITTEN_MESSAGE

from tests.support.records import usage_record
from tests.support.usage import drain

TABLE = LOCAL_TABLE_NAMES["UsageTable"]


@pytest.fixture
def client(mock_dynamodb: Any) -> Any:
    return mock_dynamodb


def record(request_id: str = "r1", **kw: Any) -> UsageRecord:
    return usage_record(
        **{
            "request_id": request_id,
            "stream": True,
            "gateway_prompt_tokens": 10,
            "gateway_completion_tokens": 5,
            "latency_ms": 12.5,
            **kw,
        }
    )


def rollup(client: Any, pk: str, day: str) -> dict[str, int]:
    item = client.get_item(TableName=TABLE, Key={"pk": {"S": pk}, "sk": {"S": f"day#{day}"}})
    return {k: int(v["N"]) for k, v in item.get("Item", {}).items() if "N" in v}


def test_write_is_idempotent_and_rolls_up_once(client: Any) -> None:
    store = UsageStore(client=client, table=TABLE, retention_days=30)
    assert store.write(record()) is True
    assert store.write(record()) is False  # same request id: nothing more
    store.write(record("r2", status=UsageStatus.UPSTREAM_ERROR, completion_tokens=0))
    assert rollup(client, "key#key_a", "2026-11-22") == {}  # not on the request path
    drain(client)
    [first, second] = store.query(key_id="key_a")
    assert first == record()
    assert second.status is UsageStatus.UPSTREAM_ERROR
    expected = {"requests": 2, "prompt_tokens": 20, "completion_tokens": 5,
                "total_tokens": 25, "errors": 1, "rate_limited": 0,
            "cached_tokens": 0}  # fmt: skip
    assert rollup(client, "key#key_a", "2026-11-22") == expected
    assert rollup(client, "model#qwen3", "2026-11-22") == expected
    assert store.get(request_id="r2") == second


def test_query_time_range(client: Any) -> None:
    store = UsageStore(client=client, table=TABLE, retention_days=30)
    for hour in (1, 5, 9):
        store.write(record(f"h{hour}", created_at=datetime(2026, 11, 22, hour, tzinfo=UTC)))
    got = store.query(
        key_id="key_a",
        since=datetime(2026, 11, 22, 2, tzinfo=UTC),
        until=datetime(2026, 11, 22, 9, tzinfo=UTC),
    )
    assert [r.request_id for r in got] == ["h5", "h9"]  # both ends inclusive
    got = store.query(key_id="key_a", until=datetime(2026, 11, 22, 8, 59, tzinfo=UTC))
    assert [r.request_id for r in got] == ["h1", "h5"]
    assert [r.request_id for r in store.query(key_id="key_a")] == ["h1", "h5", "h9"]


class Failing:
    """A table that refuses every write (throttled), or hangs (paused)."""

    def __init__(self, *, hang: float = 0.0) -> None:
        self.calls = 0
        self.hang = hang

    def put_item(self, **kw: Any) -> None:
        self.calls += 1
        time.sleep(self.hang)
        raise ClientError({"Error": {"Code": "ProvisionedThroughputExceededException"}}, "PutItem")


@pytest.mark.parametrize("hang", [0.0, 5.0])
def test_record_past_its_deadline_becomes_a_log_line(
    hang: float, caplog: pytest.LogCaptureFixture
) -> None:
    """Throttled: retried quickly until the deadline. Hanging: abandoned at the deadline.
    Either way `record` returns within about the deadline, and the record is logged whole."""
    failing = Failing(hang=hang)
    store = UsageStore(client=failing, table=TABLE, retention_days=30, deadline_seconds=0.3)  # type: ignore[arg-type]
    started = time.monotonic()
    with caplog.at_level(logging.ERROR, logger="gateway"):
        anyio.run(store.record, record())
    assert time.monotonic() - started < 1.0  # not 5 s, not botocore's 4 x (2 s + 5 s)
    assert failing.calls >= (2 if hang == 0 else 1)
    [line] = [r for r in caplog.records if r.getMessage() == UNWRITTEN_MESSAGE]
    assert UsageRecord.from_json(line.usage_record) == record()  # type: ignore[attr-defined]


def test_reservation_fields_survive_the_item_and_the_log_line(client: Any) -> None:
    reserved = record(
        reserved_tokens=4106, reserved_window_minute=29_000_000, reserved_month="2026-11"
    )
    store = UsageStore(client=client, table=TABLE, retention_days=30)
    store.write(reserved)
    assert store.get(request_id="r1") == reserved
    assert UsageRecord.from_json(reserved.to_json()) == reserved
