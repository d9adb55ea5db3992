"""Recompute one day's rollups from the raw records (`gateway usage rebuild-rollups`).

The day's rollups are set to the sums of the raw records the aggregator has counted
(those with `aggregated_at`); records it has not reached yet are left to it, so the
rollups end exact either way. Each rollup is replaced on condition that it still holds
what was read: if the aggregator changed it meanwhile, it is reported (run again).

Finding every raw record of a day across keys takes one Scan of the usage table (with a
filter), paged, with progress: an operator's repair, not something the gateway does.
Run it for a day whose raw records have not expired (USAGE_RETENTION_DAYS).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Any

from gateway import layout
from gateway.aws import ConditionFailed, botocore_errors, pages
from gateway.usage.aggregate import COUNTERS, ItemKey, rollups
from gateway.usage.records import UsageRecord

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient


@dataclass
class RebuildSummary:
    scanned: int = 0
    records: int = 0
    not_aggregated: int = 0
    written: int = 0
    unchanged: int = 0
    deleted: int = 0
    changed_meanwhile: int = 0

    def __str__(self) -> str:
        return (
            f"{self.records} raw records ({self.not_aggregated} not aggregated yet, left to "
            f"the aggregator); rollups: {self.written} rewritten, {self.deleted} deleted, "
            f"{self.unchanged} already exact, {self.changed_meanwhile} changed meanwhile"
        )


def _counters(item: dict[str, Any]) -> dict[str, int]:
    counters = {name: layout.number(item, name) for name in COUNTERS}
    for name, value in item.items():  # the guard's block counters (usage/aggregate.py)
        if name.startswith("guard_") and "N" in value:
            counters[name] = layout.number(item, name)
    return counters


def _scan_day(
    client: DynamoDBClient,
    table: str,
    day: str,
    summary: RebuildSummary,
    progress: Callable[[str], None],
) -> tuple[list[UsageRecord], dict[ItemKey, dict[str, int]]]:
    records: list[UsageRecord] = []
    rollups: dict[ItemKey, dict[str, int]] = {}
    for page in pages(
        client,
        "scan",
        TableName=table,
        FilterExpression="begins_with(sk, :req) OR sk = :day OR begins_with(sk, :mday) "
        "OR begins_with(sk, :rday)",
        ExpressionAttributeValues={
            ":req": {"S": layout.RECORD + day},
            ":day": {"S": layout.day_sk(day)},
            ":mday": {"S": layout.key_model_day_sk(day, "")},
            ":rday": {"S": layout.key_route_day_sk(day, "")},
        },
        ConsistentRead=True,
    ):
        summary.scanned += int(page.get("ScannedCount", 0))
        for item in page.get("Items", []):
            sk = item["sk"]["S"]
            if layout.is_record(sk):
                summary.records += 1
                if "aggregated_at" in item:
                    records.append(UsageRecord.from_item(dict(item)))
                else:
                    summary.not_aggregated += 1
            else:
                rollups[(item["pk"]["S"], sk)] = _counters(dict(item))
        progress(f"scanned {summary.scanned} items: {summary.records} raw records of {day}")
    return records, rollups


def rebuild_day(
    client: DynamoDBClient,
    *,
    table: str,
    day: date,
    progress: Callable[[str], None] = lambda _: None,
) -> RebuildSummary:
    summary = RebuildSummary()
    records, current = _scan_day(client, table, day.isoformat(), summary, progress)
    expected: dict[ItemKey, dict[str, int]] = {}
    for record in records:
        for key, values in rollups(record):
            totals = expected.setdefault(key, dict.fromkeys(COUNTERS, 0))
            for name, value in values.items():
                totals[name] = totals.get(name, 0) + value
    for key in sorted(set(expected) | set(current)):
        want, have = expected.get(key), current.get(key)
        if want == have:
            summary.unchanged += 1
            continue
        try:
            _replace(client, table, key, want, have)
        except ConditionFailed:
            summary.changed_meanwhile += 1
            continue
        if want is None:
            summary.deleted += 1
        else:
            summary.written += 1
    progress(f"done: {summary}")
    return summary


def _replace(
    client: DynamoDBClient,
    table: str,
    key: ItemKey,
    want: dict[str, int] | None,
    have: dict[str, int] | None,
) -> None:
    """Put `want` (or delete, if None) where the item still holds `have`."""
    values: dict[str, Any] = {}
    if have is None:
        condition = "attribute_not_exists(pk)"
        names: dict[str, str] | None = None
    else:
        condition = " AND ".join(f"#{n} = :old_{n}" for n in have)
        values = layout.to_item({f":old_{n}": v for n, v in have.items()})
        names = {f"#{n}": n for n in have}
    extra: dict[str, Any] = {"ConditionExpression": condition}
    if values:
        extra["ExpressionAttributeValues"] = values
    if names:
        extra["ExpressionAttributeNames"] = names
    item_key = layout.item_key(*key)
    with botocore_errors("DynamoDB"):
        if want is None:
            client.delete_item(TableName=table, Key=item_key, **extra)
        else:
            item = {**item_key, **layout.to_item(want)}
            client.put_item(TableName=table, Item=item, **extra)
