"""Write usage records (one conditional PutItem each, idempotent) and read them back.

The request path writes nothing else for usage: rollups and the settling of rate-limit
reservations happen off the path, in the aggregator fed by the table's stream
(usage/aggregate.py). So no two requests ever write the same usage item.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

import anyio
import anyio.to_thread

from gateway import layout
from gateway.aws import (
    ConditionFailed,
    botocore_errors,
    items,
    retry_quickly,
    retry_quickly_async,
)
from gateway.usage.records import UsageRecord

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

    from gateway.dynamodb_http import DynamoDBHttp

logger = logging.getLogger(__name__)

# The log line a record takes when it cannot be written within its deadline. A CloudWatch
# Logs subscription feeds these lines to the write-back function (usage/batches.py);
# `gateway usage replay` writes hand-exported ones.
UNWRITTEN_MESSAGE = "usage_record_unwritten"


class UsageStore:
    def __init__(
        self,
        *,
        client: DynamoDBClient,
        table: str,
        retention_days: int,
        deadline_seconds: float = 2.0,
        sleep: Callable[[float], None] = time.sleep,
        http: DynamoDBHttp | None = None,
    ) -> None:
        """`http`: the request path's writer (no botocore, no thread hop); without it,
        `record` runs `write` (boto3) in a worker thread."""
        self._client = client
        self._http = http
        self._table = table
        self._retention_days = retention_days
        self._deadline_seconds = deadline_seconds
        self._sleep = sleep

    def write(self, record: UsageRecord, *, deadline: float | None = None) -> bool:
        """Put the raw record unless its request id is already recorded: one call, plus
        quick retries on conflicts, throttling and 5xx until `deadline` (a
        time.monotonic() value; None: a few retries).

        Returns True if written now, False if it was already there. Raises
        DependencyError when DynamoDB keeps failing.
        """
        item = record.to_item(retention_days=self._retention_days)

        def put() -> None:
            with botocore_errors("DynamoDB"):
                self._client.put_item(
                    TableName=self._table,
                    Item=item,
                    ConditionExpression="attribute_not_exists(pk)",
                )

        try:
            retry_quickly(put, deadline=deadline, sleep=self._sleep)
        except ConditionFailed:
            return False  # already recorded: writes are idempotent on the request id
        return True

    async def record(self, record: UsageRecord) -> None:
        """Write the record within the deadline (`deadline_seconds`), else log it whole
        as `usage_record_unwritten` for the write-back. Never raises; returns within the
        deadline even if DynamoDB hangs (a write still in flight is left to finish: the
        write-back is idempotent with it)."""
        deadline = time.monotonic() + self._deadline_seconds
        # One scope: shielded, as a client leaving mid-write must not abandon its own
        # record, and cancelled by its own deadline only.
        scope = anyio.CancelScope(
            shield=True, deadline=anyio.current_time() + self._deadline_seconds
        )
        with scope:
            try:
                if self._http is not None:
                    await self._write_async(record, deadline=deadline)
                else:
                    await anyio.to_thread.run_sync(
                        lambda: self.write(record, deadline=deadline), abandon_on_cancel=True
                    )
            except Exception as exc:  # noqa: BLE001 - whatever failed, the record must survive
                self.log_unwritten(record, reason=str(exc) or type(exc).__name__)
        if scope.cancelled_caught:
            self.log_unwritten(record, reason=f"no answer within {self._deadline_seconds:g}s")

    async def _write_async(self, record: UsageRecord, *, deadline: float) -> None:
        """`write` on the event loop, through the JSON-protocol client."""
        http = self._http
        assert http is not None
        item = record.to_item(retention_days=self._retention_days)

        async def put() -> None:
            await http.put_item(table=self._table, item=item, condition="attribute_not_exists(pk)")

        # ConditionFailed: already recorded (writes are idempotent on the request id).
        with contextlib.suppress(ConditionFailed):
            await retry_quickly_async(put, deadline=deadline)

    async def close(self) -> None:
        """Close the request path's connections (app shutdown, SnapStart restore)."""
        if self._http is not None:
            await self._http.reset()

    @staticmethod
    def log_unwritten(record: UsageRecord, *, reason: str) -> None:
        logger.error(UNWRITTEN_MESSAGE, extra={"usage_record": record.to_json(), "reason": reason})

    def query(
        self,
        *,
        key_id: str,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int | None = None,
    ) -> list[UsageRecord]:
        """This key's raw records in [since, until], oldest first."""
        low, high = layout.records_between(since, until)
        records: list[UsageRecord] = []
        for item in items(
            self._client,
            "query",
            TableName=self._table,
            KeyConditionExpression="pk = :pk AND sk BETWEEN :lo AND :hi",
            ExpressionAttributeValues={
                ":pk": {"S": layout.key_pk(key_id)},
                ":lo": {"S": low},
                ":hi": {"S": high},
            },
        ):
            records.append(UsageRecord.from_item(item))
            if limit is not None and len(records) >= limit:
                break
        return records

    def get(self, *, request_id: str) -> UsageRecord | None:
        with botocore_errors("DynamoDB"):
            response = self._client.query(
                TableName=self._table,
                IndexName="request_id-index",
                KeyConditionExpression="request_id = :r",
                ExpressionAttributeValues={":r": {"S": request_id}},
            )
        items = response.get("Items", [])
        return UsageRecord.from_item(items[0]) if items else None
