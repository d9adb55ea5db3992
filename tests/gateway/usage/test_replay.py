"""Replaying `usage_record_unwritten` log lines: written once, however often replayed.

On moto's server (the session's `dynamodb` fixture), each test with its own key and model.
"""

from __future__ import annotations

import io
import json
import logging
import uuid
from collections.abc import Iterator
from contextlib import closing
from datetime import UTC, datetime
from typing import Any

import anyio
import boto3
import pytest
from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter
from botocore.exceptions import ClientError
from devstack.tables import LOCAL_TABLE_NAMES
from gateway.usage import UsageRecord, UsageStatus, UsageStore
from gateway.usage.replay import replay

from tests.support.records import usage_record
from tests.support.usage import drain

TABLE = LOCAL_TABLE_NAMES["UsageTable"]


@pytest.fixture
def client(dynamodb: str) -> Iterator[Any]:
    with closing(boto3.client("dynamodb")) as made:
        yield made


@pytest.fixture
def key_id() -> str:
    return f"key_{uuid.uuid4().hex[:12]}"


class FailingClient:
    """A DynamoDB client whose every write fails (the table is down)."""

    def put_item(self, **kw: Any) -> None:
        raise ClientError({"Error": {"Code": "InternalServerError"}}, "PutItem")


def record(key_id: str, request_id: str = "r1", **kw: Any) -> UsageRecord:
    """A record of this key (request ids and the model are made unique with it)."""
    return usage_record(
        **{
            "request_id": f"{request_id}-{key_id}",
            "key_id": key_id,
            "model": f"model-{key_id}",
            "created_at": datetime(2026, 11, 22, 10, 0, 0, 123000, tzinfo=UTC),
            "stream": True,
            "upstream_prompt_tokens": 10,
            "gateway_prompt_tokens": 10,
            "gateway_completion_tokens": 5,
            "finish_reason": "stop",
            "latency_ms": 12.5,
            "ttft_ms": 3.25,
            **kw,
        }
    )


def unwritten_log_lines(*records: UsageRecord) -> list[str]:
    """What the gateway logs (Powertools' JSON formatter) when it cannot write these."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(LambdaPowertoolsFormatter(service="gateway"))
    store_logger = logging.getLogger("gateway.usage.store")
    store_logger.addHandler(handler)
    try:
        failing = UsageStore(
            client=FailingClient(),  # type: ignore[arg-type]
            table=TABLE,
            retention_days=30,
            deadline_seconds=0.05,
        )
        for rec in records:
            anyio.run(failing.record, rec)
    finally:
        store_logger.removeHandler(handler)
    return buffer.getvalue().splitlines()


def rollup(client: Any, pk: str) -> dict[str, int]:
    item = client.get_item(TableName=TABLE, Key={"pk": {"S": pk}, "sk": {"S": "day#2026-11-22"}})
    return {k: int(v["N"]) for k, v in item.get("Item", {}).items() if "N" in v}


def test_replay_writes_logged_records_once(client: Any, key_id: str) -> None:
    first = record(key_id, "r1")
    second = record(key_id, "r2", status=UsageStatus.UPSTREAM_ERROR)
    logged = unwritten_log_lines(first, second)
    unwritten = [line for line in logged if "usage_record_unwritten" in line]
    assert len(unwritten) == 2  # besides the retry warnings
    lines = [
        "START RequestId: 8f5e Version: $LATEST",  # not JSON
        json.dumps({"level": "INFO", "message": "request completed", "request_id": "r0"}),
        "",  # blank lines are not counted
        *logged,
        "[1, 2]",  # JSON, not an object
    ]
    store = UsageStore(client=client, table=TABLE, retention_days=30)

    summary = replay(lines, store)
    assert (summary.replayed, summary.already_present, summary.invalid) == (2, 0, [])
    assert summary.skipped == len(lines) - 1 - 2
    assert store.query(key_id=key_id) == [first, second]
    drain(client)
    once = {"requests": 2, "prompt_tokens": 20, "completion_tokens": 10,
            "total_tokens": 30, "errors": 1, "rate_limited": 0,
            "cached_tokens": 0}  # fmt: skip
    assert rollup(client, f"key#{key_id}") == once

    again = replay(lines, store)
    assert (again.replayed, again.already_present) == (0, 2)
    assert str(again) == (
        f"replayed 0, already present 2, failed 0, unreadable 0, skipped {summary.skipped}"
    )
    drain(client)
    assert rollup(client, f"key#{key_id}") == once
    assert rollup(client, f"model#model-{key_id}") == once
    assert len(store.query(key_id=key_id)) == 2


def test_replay_reads_prefixed_lines_and_reports_unreadable_records(
    client: Any, key_id: str
) -> None:
    lost = record(key_id, "r9")
    [line] = [x for x in unwritten_log_lines(lost) if "usage_record_unwritten" in x]
    broken = json.loads(line)
    del broken["usage_record"]["key_id"]
    lines = [
        f"2026-11-22T10:00:01.000Z 2026/11/22/[$LATEST]abcdef {line}",  # as `aws logs tail`
        json.dumps(broken),
        json.dumps({"message": "usage_record_unwritten", "usage_record": "not an object"}),
        json.dumps({"message": "usage_record_unwritten"}),
    ]
    store = UsageStore(client=client, table=TABLE, retention_days=30)
    summary = replay(lines, store)
    assert (summary.replayed, summary.already_present, summary.skipped) == (1, 0, 3)
    assert [number for number, _ in summary.invalid] == [2, 3, 4]
    assert "key_id" in summary.invalid[0][1]
    assert store.get(request_id=lost.request_id) == lost


def test_replay_reports_lines_it_cannot_write_and_goes_on(client: Any, key_id: str) -> None:
    """A line DynamoDB refuses is reported and skipped; the lines after it are written."""
    good, refused = record(key_id, "good"), record(key_id, "refused")
    lines = [x for x in unwritten_log_lines(refused, good) if "usage_record_unwritten" in x]

    class RefusesOne:
        def put_item(self, **kw: Any) -> Any:
            if kw["Item"]["request_id"]["S"] == refused.request_id:
                raise ClientError({"Error": {"Code": "ValidationException"}}, "PutItem")
            return client.put_item(**kw)

    store = UsageStore(client=RefusesOne(), table=TABLE, retention_days=30)  # type: ignore[arg-type]
    summary = replay(["not json", *lines], store)
    assert (summary.replayed, summary.skipped, summary.ok) == (1, 1, False)
    assert [number for number, _ in summary.failed] == [2]
    assert "DynamoDB is unavailable (ValidationException)" in summary.failed[0][1]
    assert str(summary) == "replayed 1, already present 0, failed 1, unreadable 0, skipped 1"
    assert (
        UsageStore(client=client, table=TABLE, retention_days=30).get(request_id=good.request_id)
        == good
    )
