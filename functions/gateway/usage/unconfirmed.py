"""Settling an unconfirmed admission: the gateway answered 503 without learning whether its
admission's update landed (limits/admission.py). The record carries the reservation; this
refunds it if, and only if, the admission's marker on the month item shows that it
landed, and removes the marker with the refund, so it happens once however often the
record is seen (a replayed or retried batch).

A marker not found may be an admission that never landed, one settled before, or one
still on its way: the fence (`SET fence = sent`, kept if higher) then bars it from
landing (limits/updates.month_update), and the marker is looked for once more.

Off the request path (the aggregator), and rare: two or three UpdateItems per unconfirmed
record, none for any other.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from gateway import layout
from gateway.aws import ConditionFailed, botocore_errors, retry_quickly
from gateway.limits.items import FENCE, marker_attribute, window_attributes
from gateway.usage.records import UsageRecord

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient


def needs_refund(record: UsageRecord) -> bool:
    return record.reserved_unconfirmed_ms is not None and record.reserved_month is not None


def refund(
    client: DynamoDBClient,
    *,
    table: str,
    record: UsageRecord,
    current_minute: int,
    sleep: Callable[[float], None] = time.sleep,
) -> bool:
    """Settle the record's unconfirmed admission if it landed; whether it did so now.
    Raises DependencyError when DynamoDB keeps failing (retrying is safe)."""
    assert record.reserved_month is not None and record.reserved_unconfirmed_ms is not None
    key = layout.item_key(layout.key_pk(record.key_id), layout.month_sk(record.reserved_month))
    names = {"#m": marker_attribute(record.request_id)}
    delta = record.billed_tokens - record.reserved_tokens
    adds: list[str] = []
    if delta:
        adds.append("tokens :d")
        minute = record.reserved_window_minute
        if minute is not None and minute >= current_minute:  # a past window limits nothing
            names["#wt"] = window_attributes(minute)[1]
            adds.append("#wt :d")
    settle: dict[str, Any] = {
        "TableName": table,
        "Key": key,
        "UpdateExpression": ("ADD " + ", ".join(adds) + " " if adds else "") + "REMOVE #m",
        "ConditionExpression": "attribute_exists(#m)",
        "ExpressionAttributeNames": names,
    }
    if adds:
        settle["ExpressionAttributeValues"] = layout.to_item({":d": delta})
    if _write_if(client, settle, sleep):
        return True
    fence = {
        "TableName": table,
        "Key": key,
        "UpdateExpression": "SET #f = :t",
        "ConditionExpression": "attribute_not_exists(#f) OR #f < :t",
        "ExpressionAttributeNames": {"#f": FENCE},
        "ExpressionAttributeValues": layout.to_item({":t": record.reserved_unconfirmed_ms}),
    }
    _write_if(client, fence, sleep)  # false: a later admission's fence stands already
    return _write_if(client, settle, sleep)


def _write_if(
    client: DynamoDBClient, update: dict[str, Any], sleep: Callable[[float], None]
) -> bool:
    """One conditional UpdateItem; False if its condition failed. Throttling and
    conflicts are retried a few times (aws.retry_quickly)."""

    def call() -> None:
        with botocore_errors("DynamoDB"):
            client.update_item(**update)

    try:
        retry_quickly(call, deadline=None, sleep=sleep)
    except ConditionFailed:
        return False
    return True
