"""Add raw usage records into the rollups and settle their reservations, exactly once.

Fed by the usage table's stream (usage/batches.py), off the request path. A batch of
records becomes as few TransactWriteItems as DynamoDB's 100-action limit allows. Each
transaction holds, for its records:

- one marker per record: `SET aggregated_at` on the raw record itself, on condition that
  it exists and has no `aggregated_at` yet. A record already counted (a retried batch, a
  replayed event) fails its condition; the transaction is then cancelled, the record
  dropped from it and the rest committed. So every record counts once, whatever Lambda
  retries: stream batches have no stable identity (a retry after a partial failure
  starts at another record, and events do not name their shard), records do;
- one `ADD` per rollup item the records touch (key/day, model/day, key/model/day,
  key/route/day), their counters summed over the records;
- one `ADD` per limits item the records reserved in (the budget month, with its window
  attributes, or the tpm window item of a key without a budget), of the sums of
  `used - reserved`; a window only while its minute lasts; on a budget item, with the
  `REMOVE` of the records' admission markers (limits/admission.py). The planning is
  usage/plan.py's.

A record whose admission went unanswered (`reserved_unconfirmed_ms`) is settled apart,
after its transaction, by its admission's marker (usage/unconfirmed.py): once, and only
if the admission landed.

Only the aggregator writes rollups, and the request path's only writes to a key's limit
items are admission's single-item UpdateItems, which retry quickly when they meet one of
these transactions (TransactionConflictException).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, Any

from gateway import layout
from gateway.aws import ConditionFailed, botocore_errors, retry_quickly
from gateway.errors import DependencyError
from gateway.limits.items import WINDOW_TTL_SECONDS
from gateway.usage.plan import (
    COUNTERS,
    MAX_TRANSACT_ITEMS,
    ItemKey,
    Plan,
    plan,
    rollup_keys,
    rollup_values,
    rollups,
)
from gateway.usage.records import UsageRecord
from gateway.usage.unconfirmed import needs_refund, refund

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

__all__ = [
    "COUNTERS",
    "MAX_TRANSACT_ITEMS",
    "AggregateResult",
    "AggregationError",
    "Aggregator",
    "ItemKey",
    "plan",
    "rollup_keys",
    "rollup_values",
    "rollups",
]

logger = logging.getLogger(__name__)

# Pauses before retrying a transaction that aws.map_error calls retryable (a conflict with
# another transaction, throttling): longer than the request path's, as nothing waits on it.
_RETRY_DELAYS = (0.02, 0.05, 0.1, 0.2, 0.4, 0.8, 1.6)


class AggregationError(Exception):
    """A transaction kept failing; `index` is the first record (in the batch's order)
    not known to be counted."""

    def __init__(self, message: str, *, index: int) -> None:
        super().__init__(message)
        self.index = index


@dataclass
class AggregateResult:
    counted: int = 0  # records added now
    already: int = 0  # records an earlier attempt had counted
    transactions: int = 0
    refunded: int = 0  # unconfirmed admissions found to have landed, settled now


class Aggregator:
    def __init__(
        self,
        *,
        client: DynamoDBClient,
        table: str,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._client = client
        self._table = table
        self._clock = clock
        self._sleep = sleep

    def apply(self, records: Sequence[UsageRecord]) -> AggregateResult:
        """Count `records` (in stream order) into rollups and settle them, each once.

        Raises AggregationError if a transaction keeps failing: the records before its
        `index` are counted, the others may be retried (their markers keep it exact).
        """
        result = AggregateResult()
        done = 0
        current_minute = int(self._clock() // 60)
        for chunk in plan(records, current_minute=current_minute):
            planned = list(chunk.records)
            try:
                self._commit(chunk, result)
            except DependencyError as exc:
                raise AggregationError(str(exc), index=done) from exc
            # Counted or counted before: either way, their unconfirmed admissions are
            # settled now, each once by its marker, so a retry may settle them again.
            for i, record in enumerate(planned):
                if not needs_refund(record):
                    continue
                try:
                    result.refunded += refund(
                        self._client, table=self._table, record=record,
                        current_minute=current_minute, sleep=self._sleep,
                    )  # fmt: skip
                except DependencyError as exc:
                    raise AggregationError(str(exc), index=done + i) from exc
            done += len(planned)
        return result

    def _commit(self, chunk: Plan, result: AggregateResult) -> None:
        """Commit `chunk`, retrying what aws.map_error calls retryable. A record already
        counted fails its marker's condition (ConditionFailed, its codes in the chunk's
        order): it is dropped and the rest committed."""
        while chunk.records:
            try:
                retry_quickly(
                    partial(self._transact, chunk),
                    deadline=None,
                    sleep=self._sleep,
                    delays=_RETRY_DELAYS,
                )
            except ConditionFailed as exc:
                codes = exc.codes[: len(chunk.records)]
                counted = {i for i, code in enumerate(codes) if code == "ConditionalCheckFailed"}
                if not counted:  # a condition on no marker: not a record counted before
                    raise DependencyError(
                        f"DynamoDB refused the rollup transaction ({exc})"
                    ) from exc
                result.already += len(counted)
                left = [r for i, r in enumerate(chunk.records) if i not in counted]
                [chunk] = plan(left, current_minute=int(self._clock() // 60)) or [Plan()]
                continue
            result.counted += len(chunk.records)
            result.transactions += 1
            return

    def _transact(self, chunk: Plan) -> None:
        with botocore_errors("DynamoDB"):
            self._client.transact_write_items(TransactItems=self._items(chunk))  # type: ignore[arg-type]

    def _items(self, chunk: Plan) -> list[dict[str, Any]]:
        now = datetime.fromtimestamp(self._clock(), UTC).isoformat(timespec="milliseconds")
        items: list[dict[str, Any]] = [
            self._update(
                (layout.key_pk(r.key_id), r.sk),
                "SET aggregated_at = :now",
                {":now": {"S": now}},
                condition="attribute_exists(pk) AND attribute_not_exists(aggregated_at)",
            )
            for r in chunk.records
        ]
        for key, totals in chunk.rollups.items():
            expression = "ADD " + ", ".join(f"{name} :{name}" for name in totals)
            values = layout.to_item({f":{name}": value for name, value in totals.items()})
            items.append(self._update(key, expression, values))
        for key in sorted(chunk.settles.keys() | chunk.markers.keys()):
            deltas = {a: d for a, d in chunk.settles.get(key, {}).items() if d}
            markers = chunk.markers.get(key, set())
            if deltas or markers:
                items.append(self._settle(key, deltas, markers))
        return items

    def _settle(self, key: ItemKey, deltas: dict[str, int], markers: set[str]) -> dict[str, Any]:
        names = {f"#a{i}": name for i, name in enumerate(deltas)}
        values = layout.to_item({f":d{i}": d for i, d in enumerate(deltas.values())})
        clauses = []
        if deltas:
            clauses.append("ADD " + ", ".join(f"#a{i} :d{i}" for i in range(len(deltas))))
        if markers:
            names |= {f"#m{i}": marker for i, marker in enumerate(sorted(markers))}
            clauses.append("REMOVE " + ", ".join(f"#m{i}" for i in range(len(markers))))
        expression = " ".join(clauses)
        minute = layout.window_minute(key[1])
        if minute is not None:  # a window item: keep its TTL if it was deleted meanwhile
            values |= layout.to_item({":exp": (minute + 1) * 60 + WINDOW_TTL_SECONDS})
            expression += " SET expires_at = if_not_exists(expires_at, :exp)"
        update = self._update(key, expression, values)
        update["Update"]["ExpressionAttributeNames"] = names
        return update

    def _update(
        self,
        key: ItemKey,
        expression: str,
        values: dict[str, Any],
        *,
        condition: str | None = None,
    ) -> dict[str, Any]:
        update: dict[str, Any] = {
            "TableName": self._table,
            "Key": {"pk": {"S": key[0]}, "sk": {"S": key[1]}},
            "UpdateExpression": expression,
        }
        if values:  # DynamoDB refuses an empty map
            update["ExpressionAttributeValues"] = values
        if condition:
            update["ConditionExpression"] = condition
        return {"Update": update}
