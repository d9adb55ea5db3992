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
  `used - reserved`; a window only while its minute lasts.

Only the aggregator writes rollups, and the request path's only writes to a key's limit
items are admission's single-item UpdateItems, which retry quickly when they meet one of
these transactions (TransactionConflictException).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, Any

from gateway import layout
from gateway.aws import ConditionFailed, botocore_errors, retry_quickly
from gateway.errors import DependencyError
from gateway.limits.items import WINDOW_TTL_SECONDS, window_attributes
from gateway.usage.guardlines import guard_rollups
from gateway.usage.records import UsageRecord, UsageStatus

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

logger = logging.getLogger(__name__)

MAX_TRANSACT_ITEMS = 100
# `rate_limited`: refusals by a key's limits, also counted in `errors` (the dashboard).
COUNTERS = (
    "requests",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "errors",
    "rate_limited",
    "cached_tokens",
)
# Pauses before retrying a transaction that aws.map_error calls retryable (a conflict with
# another transaction, throttling): longer than the request path's, as nothing waits on it.
_RETRY_DELAYS = (0.02, 0.05, 0.1, 0.2, 0.4, 0.8, 1.6)


ItemKey = tuple[str, str]


def rollup_keys(record: UsageRecord) -> list[ItemKey]:
    """The rollup items a record adds to: key/day, model/day, key/model/day, key/route/day."""
    key, day = layout.key_pk(record.key_id), record.day
    return [
        (key, layout.day_sk(day)),
        (layout.model_pk(record.model), layout.day_sk(day)),
        (key, layout.key_model_day_sk(day, record.model)),
        (key, layout.key_route_day_sk(day, record.route or "chat")),
    ]


def rollups(record: UsageRecord) -> list[tuple[ItemKey, dict[str, int]]]:
    """Every rollup item a record adds to, and what it adds (several entries may name
    one item: their counters add up)."""
    values, items = rollup_values(record), rollup_keys(record)
    return [(item, values) for item in items] + guard_rollups(record, own_items=items)


def rollup_values(record: UsageRecord) -> dict[str, int]:
    return {
        "requests": 1,
        "prompt_tokens": record.prompt_tokens,
        "completion_tokens": record.completion_tokens,
        "total_tokens": record.total_tokens,
        "errors": int(record.is_error),
        "rate_limited": int(record.status is UsageStatus.RATE_LIMITED),
        "cached_tokens": record.cached_tokens or 0,
    }


@dataclass
class _Plan:
    """One transaction: its records' markers, then summed rollups and settlements."""

    records: list[UsageRecord] = field(default_factory=list)
    rollups: dict[ItemKey, dict[str, int]] = field(default_factory=dict)
    # Limits items: attribute -> tokens to add (`used - reserved`, summed).
    settles: dict[ItemKey, dict[str, int]] = field(default_factory=dict)

    def size(self) -> int:
        return len(self.records) + len(self.rollups) + len(self.settles)

    def new_items(self, record: UsageRecord, current_minute: int) -> int:
        settles = [k for k, _ in _settlements(record, current_minute) if k not in self.settles]
        items = {k for k, _ in rollups(record)}
        return 1 + sum(k not in self.rollups for k in items) + len(set(settles))

    def add(self, record: UsageRecord, current_minute: int) -> None:
        self.records.append(record)
        for key, values in rollups(record):
            totals = self.rollups.setdefault(key, dict.fromkeys(COUNTERS, 0))
            for name, value in values.items():
                totals[name] = totals.get(name, 0) + value
        delta = record.billed_tokens - record.reserved_tokens
        for key, attribute in _settlements(record, current_minute):
            deltas = self.settles.setdefault(key, {})
            deltas[attribute] = deltas.get(attribute, 0) + delta


def _settlements(record: UsageRecord, current_minute: int) -> list[tuple[ItemKey, str]]:
    """(item, attribute) pairs holding this record's reservation (limits/store.py)."""
    found: list[tuple[ItemKey, str]] = []
    if record.billed_tokens == record.reserved_tokens:
        return found
    pk = layout.key_pk(record.key_id)
    minute = record.reserved_window_minute
    current = minute is not None and minute >= current_minute  # a past window limits nothing
    if record.reserved_month is not None:
        month = (pk, layout.month_sk(record.reserved_month))
        found.append((month, "tokens"))
        if current and minute is not None:
            found.append((month, window_attributes(minute)[1]))
    elif current and minute is not None:
        found.append(((pk, layout.window_sk(minute)), "tokens"))
    return found


def plan(records: Iterable[UsageRecord], *, current_minute: int) -> list[_Plan]:
    """Records in order, cut into transactions of at most MAX_TRANSACT_ITEMS actions."""
    plans: list[_Plan] = []
    seen: set[ItemKey] = set()
    current = _Plan()
    for record in records:
        if (record.key_id, record.sk) in seen:
            continue  # the same record twice in one batch: a transaction may name it once
        seen.add((record.key_id, record.sk))
        if (
            current.records
            and current.size() + current.new_items(record, current_minute) > MAX_TRANSACT_ITEMS
        ):
            plans.append(current)
            current = _Plan()
        current.add(record, current_minute)
    if current.records:
        plans.append(current)
    return plans


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
        for chunk in plan(records, current_minute=int(self._clock() // 60)):
            try:
                self._commit(chunk, result)
            except DependencyError as exc:
                raise AggregationError(str(exc), index=done) from exc
            done += len(chunk.records)
        return result

    def _commit(self, chunk: _Plan, result: AggregateResult) -> None:
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
                [chunk] = plan(left, current_minute=int(self._clock() // 60)) or [_Plan()]
                continue
            result.counted += len(chunk.records)
            result.transactions += 1
            return

    def _transact(self, chunk: _Plan) -> None:
        with botocore_errors("DynamoDB"):
            self._client.transact_write_items(TransactItems=self._items(chunk))  # type: ignore[arg-type]

    def _items(self, chunk: _Plan) -> list[dict[str, Any]]:
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
        for key, deltas in chunk.settles.items():
            if any(deltas.values()):
                items.append(self._settle(key, deltas))
        return items

    def _settle(self, key: ItemKey, deltas: dict[str, int]) -> dict[str, Any]:
        names = {f"#a{i}": name for i, name in enumerate(deltas)}
        values = layout.to_item({f":d{i}": d for i, d in enumerate(deltas.values())})
        expression = "ADD " + ", ".join(f"#a{i} :d{i}" for i in range(len(deltas)))
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
            "ExpressionAttributeValues": values,
        }
        if condition:
            update["ConditionExpression"] = condition
        return {"Update": update}
