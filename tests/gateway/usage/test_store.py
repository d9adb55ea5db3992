"""Usage records: idempotent writes with rollups, retries, and the replayable log line."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import pytest
from botocore.exceptions import ClientError
from devstack.tables import LOCAL_TABLE_NAMES
from gateway.usage import UsageRecord, UsageStatus, UsageStore
from gateway.usage.store import UNWRITTEN_MESSAGE

from tests.support.records import usage_record

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
    [first, second] = store.query(key_id="key_a")
    assert first == record()
    assert second.status is UsageStatus.UPSTREAM_ERROR
    expected = {"requests": 2, "prompt_tokens": 20, "completion_tokens": 5,
                "total_tokens": 25, "errors": 1, "rate_limited": 0}  # fmt: skip
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


def test_record_survives_a_failing_table_as_a_log_line(
    client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    class Failing:
        calls = 0

        def transact_write_items(self, **kw: Any) -> None:
            self.calls += 1
            raise ClientError(
                {"Error": {"Code": "ProvisionedThroughputExceededException"}}, "TransactWriteItems"
            )

    failing = Failing()
    sleeps: list[float] = []
    store = UsageStore(client=failing, table=TABLE, retention_days=30, sleep=sleeps.append)  # type: ignore[arg-type]
    with caplog.at_level(logging.ERROR, logger="gateway"):
        store.record(record())
    assert failing.calls == 4 and sleeps == sorted(sleeps) and len(sleeps) == 3
    [line] = [r for r in caplog.records if r.getMessage() == UNWRITTEN_MESSAGE]
    assert UsageRecord.from_json(line.usage_record) == record()  # type: ignore[attr-defined]
