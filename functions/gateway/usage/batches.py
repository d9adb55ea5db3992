"""The batches that keep usage off the request path (their Lambda handlers are
gateway/lambdas/usage.py):

- `aggregate`: DynamoDB Streams batches of the usage table. Powertools' batch utility
  parses each record (DynamoDBRecord); the raw usage records among them are then counted
  into rollups and settled (usage/aggregate.py). Failures are reported per record
  (ReportBatchItemFailures): Lambda retries from the first one, and the records' markers
  keep the retry exact.
- `write_back`: a CloudWatch Logs subscription event of `usage_record_unwritten` lines;
  writes each record back (idempotent on the request id). An exception makes Lambda retry
  the event.
"""

from __future__ import annotations

import logging
from typing import Any

from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes import CloudWatchLogsEvent
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import (
    DynamoDBRecord,
    DynamoDBRecordEventName,
)

from gateway import layout
from gateway.usage.aggregate import AggregationError, Aggregator
from gateway.usage.records import UsageRecord
from gateway.usage.replay import parse_line, unwritten_record
from gateway.usage.store import UNWRITTEN_MESSAGE, UsageStore

logger = logging.getLogger(__name__)


def raw_record(record: DynamoDBRecord) -> UsageRecord | None:
    """The usage record a stream record inserted, or None for any other change (rollups,
    markers, TTL deletions). Raises ValueError for a raw record that cannot be read."""
    stream = record.dynamodb
    if record.event_name is not DynamoDBRecordEventName.INSERT or stream is None:
        return None
    image = stream.new_image
    if not layout.is_record(str(image.get("sk", ""))):
        return None
    try:
        return UsageRecord.from_image(image)
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"unreadable usage record {image.get('sk')!r}: {exc}") from exc


class UsageBatchProcessor(BatchProcessor):
    """Powertools' BatchProcessor, whose record handler parses (per-record failures),
    followed by one aggregation of all parsed records."""

    def __init__(self, aggregator: Aggregator) -> None:
        super().__init__(event_type=EventType.DynamoDBStreams)
        self._aggregator = aggregator

    def process(self) -> list[tuple[Any, ...]]:
        results = super().process()
        parsed: list[tuple[dict[str, Any], UsageRecord]] = [
            (raw, value) for status, value, raw in results if status == "success" and value
        ]
        try:
            outcome = self._aggregator.apply([record for _, record in parsed])
        except AggregationError as exc:
            # Everything from the first uncounted record on is retried by Lambda.
            info = (type(exc), exc, exc.__traceback__)
            for raw, _ in parsed[exc.index :]:
                self.success_messages.remove(raw)  # type: ignore[arg-type]
                self.failure_handler(DynamoDBRecord(raw), info)
            return results
        logger.info(
            "usage aggregated",
            extra={
                "counted": outcome.counted,
                "already_counted": outcome.already,
                "transactions": outcome.transactions,
                "refunded": outcome.refunded,
            },
        )
        return results


def aggregate(event: dict[str, Any], *, aggregator: Aggregator) -> dict[str, Any]:
    processor = UsageBatchProcessor(aggregator)
    response: dict[str, Any] = dict(
        process_partial_response(event=event, record_handler=raw_record, processor=processor)
    )
    return response


def write_back(event: dict[str, Any], *, store: UsageStore) -> dict[str, int]:
    """Write every unwritten record of a CloudWatch Logs subscription event."""
    counts = {"written": 0, "already_present": 0, "unreadable": 0}
    for log_event in CloudWatchLogsEvent(event).parse_logs_data().log_events:
        entry = parse_line(log_event.message)
        if entry is None or entry.get("message") != UNWRITTEN_MESSAGE:
            continue
        try:
            record = unwritten_record(entry)
        except ValueError as exc:
            counts["unreadable"] += 1
            logger.error("unwritten usage line unreadable", extra={"reason": str(exc)})
            continue
        # DependencyError propagates: Lambda retries the whole event (writes are
        # idempotent), then sends it to the on-failure destination.
        counts["written" if store.write(record) else "already_present"] += 1
    logger.info("usage records written back", extra=counts)
    return counts
