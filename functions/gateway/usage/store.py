"""Write usage records (idempotently, with their rollups) and read them back."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from gateway.aws import ConditionFailed, botocore_errors
from gateway.errors import DependencyError
from gateway.usage.records import UsageRecord, UsageStatus, iso_ms, key_pk, model_pk

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

logger = logging.getLogger(__name__)

# The log line an operator replays with `gateway usage replay` when DynamoDB is down.
UNWRITTEN_MESSAGE = "usage_record_unwritten"
RETRY_DELAYS = (0.05, 0.2, 0.8)


class UsageStore:
    def __init__(
        self,
        *,
        client: DynamoDBClient,
        table: str,
        retention_days: int,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._client = client
        self._table = table
        self._retention_days = retention_days
        self._sleep = sleep

    def write(self, record: UsageRecord, *, extra_items: Sequence[Any] = ()) -> bool:
        """Write the record and add it to its rollups, exactly once per request id.

        `extra_items` (e.g. settling a rate-limit reservation) join the same transaction,
        so they too apply exactly once.

        Returns True if written now, False if it was already there. Raises DependencyError
        only after the retries are spent (callers use `record`, which never raises).
        """
        rollup = {
            "UpdateExpression": "ADD requests :one, prompt_tokens :p, completion_tokens :c, "
            "total_tokens :t, errors :e, rate_limited :r",
            "ExpressionAttributeValues": {
                ":one": {"N": "1"},
                ":p": {"N": str(record.prompt_tokens)},
                ":c": {"N": str(record.completion_tokens)},
                ":t": {"N": str(record.total_tokens)},
                ":e": {"N": "1" if record.is_error else "0"},
                # refusals by a limit, also counted in `errors` (the usage dashboard)
                ":r": {"N": "1" if record.status is UsageStatus.RATE_LIMITED else "0"},
            },
        }
        day = {"S": f"day#{record.day}"}
        items: list[Any] = [
            {
                "Put": {
                    "TableName": self._table,
                    "Item": record.to_item(retention_days=self._retention_days),
                    "ConditionExpression": "attribute_not_exists(pk)",
                }
            },
            {
                "Update": {
                    "TableName": self._table,
                    "Key": {"pk": {"S": key_pk(record.key_id)}, "sk": day},
                    **rollup,
                }
            },
            {
                "Update": {
                    "TableName": self._table,
                    "Key": {"pk": {"S": model_pk(record.model)}, "sk": day},
                    **rollup,
                }
            },
            {  # the key's day per model, so /v1/usage?group_by=model never reads raw records
                "Update": {
                    "TableName": self._table,
                    "Key": {
                        "pk": {"S": key_pk(record.key_id)},
                        "sk": {"S": f"mday#{record.day}#{record.model}"},
                    },
                    **rollup,
                }
            },
            *extra_items,
        ]
        for attempt, delay in enumerate((*RETRY_DELAYS, None)):
            try:
                with botocore_errors("DynamoDB"):
                    self._client.transact_write_items(
                        TransactItems=items, ClientRequestToken=record.request_id[:36]
                    )
                return True
            except ConditionFailed:
                return False  # already recorded: writes are idempotent on the request id
            except DependencyError:
                if delay is None:
                    raise
                logger.warning("usage write failed, retrying", extra={"attempt": attempt + 1})
                self._sleep(delay)
        raise AssertionError("unreachable")

    def record(self, record: UsageRecord, *, extra_items: Sequence[Any] = ()) -> None:
        """Write, or, if DynamoDB keeps failing, log the complete record for replay."""
        try:
            self.write(record, extra_items=extra_items)
        except DependencyError as exc:
            logger.error(
                UNWRITTEN_MESSAGE,
                extra={"usage_record": record.to_json(), "reason": str(exc)},
            )

    def query(
        self,
        *,
        key_id: str,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int | None = None,
    ) -> list[UsageRecord]:
        """This key's raw records in [since, until], oldest first."""
        low = "req#" + (iso_ms(since) if since else "")
        high = "req#" + (iso_ms(until) if until else "") + "~"
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "pk = :pk AND sk BETWEEN :lo AND :hi",
            "ExpressionAttributeValues": {
                ":pk": {"S": key_pk(key_id)},
                ":lo": {"S": low},
                ":hi": {"S": high},
            },
        }
        records: list[UsageRecord] = []
        with botocore_errors("DynamoDB"):
            while True:
                response = self._client.query(**kwargs)
                records.extend(UsageRecord.from_item(i) for i in response.get("Items", []))
                if limit is not None and len(records) >= limit:
                    return records[:limit]
                if "LastEvaluatedKey" not in response:
                    return records
                kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]

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
