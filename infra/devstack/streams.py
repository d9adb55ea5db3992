"""What Lambda's event sources do for the usage functions, locally.

- `StreamPoller`: the DynamoDB Streams event source mapping of UsageAggregatorFunction.
  It reads moto's stream of the usage table, keeps only what the template's
  FilterCriteria lets through (INSERTs of raw records, sk `req#...`), and calls the
  handler with Lambda's DynamoDB-stream event shape. Like Lambda with
  ReportBatchItemFailures, it resumes at the first failed record's sequence number.
- `LogSubscription`: the CloudWatch Logs subscription filter of UsageWritebackFunction.
  Given log lines, it keeps those matching `{ $.message = "usage_record_unwritten" }` and
  calls the handler with the `awslogs` event shape (gzip, base64).
"""

from __future__ import annotations

import base64
import gzip
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any

logger = logging.getLogger(__name__)
Handler = Callable[[dict[str, Any]], dict[str, Any]]
UNWRITTEN_MESSAGE = "usage_record_unwritten"  # the filter pattern's value (template.yaml)


def lambda_record(record: dict[str, Any], stream_arn: str) -> dict[str, Any]:
    """A GetRecords record as Lambda delivers it (epoch seconds, eventSourceARN)."""
    stream = dict(record["dynamodb"])
    created = stream.get("ApproximateCreationDateTime")
    if created is not None and hasattr(created, "timestamp"):
        stream["ApproximateCreationDateTime"] = int(created.timestamp())
    return {**record, "dynamodb": stream, "eventSourceARN": stream_arn}


def passes_filter(record: dict[str, Any]) -> bool:
    """template.yaml's FilterCriteria for the usage stream."""
    sk = record.get("dynamodb", {}).get("Keys", {}).get("sk", {}).get("S", "")
    return record.get("eventName") == "INSERT" and str(sk).startswith("req#")


class StreamPoller:
    def __init__(
        self,
        *,
        dynamodb: Any,
        streams: Any,
        table: str,
        handler: Handler,
        batch_size: int = 500,
    ) -> None:
        self._dynamodb = dynamodb
        self._streams = streams
        self._table = table
        self._handler = handler
        self._batch_size = batch_size
        self._position: tuple[str, str | None] = ("TRIM_HORIZON", None)
        self._lock = threading.Lock()
        self.invocations = 0
        self.failures = 0
        self.last_event: dict[str, Any] | None = None

    def _iterator(self) -> tuple[str, str] | None:
        arn = self._dynamodb.describe_table(TableName=self._table)["Table"].get("LatestStreamArn")
        if not arn:
            return None
        shards = self._streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]
        if not shards:
            return None
        kind, sequence = self._position
        kwargs: dict[str, Any] = {"ShardIteratorType": kind}
        if sequence is not None:
            kwargs["SequenceNumber"] = sequence
        iterator = self._streams.get_shard_iterator(
            StreamArn=arn, ShardId=shards[0]["ShardId"], **kwargs
        )["ShardIterator"]
        return arn, iterator

    def poll(self) -> int:
        """One batch: returns how many stream records were read (0: caught up)."""
        with self._lock:
            found = self._iterator()
            if found is None:
                return 0
            arn, iterator = found
            records = self._streams.get_records(ShardIterator=iterator, Limit=self._batch_size)[
                "Records"
            ]
            if not records:
                return 0
            delivered = [lambda_record(r, arn) for r in records if passes_filter(r)]
            last = records[-1]["dynamodb"]["SequenceNumber"]
            if not delivered:
                self._position = ("AFTER_SEQUENCE_NUMBER", last)
                return len(records)
            event = {"Records": delivered}
            self.last_event = event
            self.invocations += 1
            try:
                response = self._handler(event)
            except Exception:  # noqa: BLE001 - as Lambda: the whole batch is retried
                self.failures += 1
                return len(records)
            failed = [f["itemIdentifier"] for f in response.get("batchItemFailures", [])]
            if failed:
                self.failures += 1
                self._position = ("AT_SEQUENCE_NUMBER", min(failed, key=int))
            else:
                self._position = ("AFTER_SEQUENCE_NUMBER", last)
            return len(records)

    def drain(self, *, timeout: float = 60.0, max_failures: int = 20) -> None:
        """Poll until caught up (or raise TimeoutError)."""
        deadline = time.monotonic() + timeout
        failures = self.failures
        while self.poll():
            if time.monotonic() > deadline or self.failures - failures > max_failures:
                raise TimeoutError("the usage stream did not drain")

    def run(self, stop: threading.Event, *, interval: float = 0.5) -> None:
        """Poll until `stop` is set (for a background thread)."""
        while not stop.is_set():
            try:
                while self.poll() and not stop.is_set():
                    pass
            except Exception as exc:  # noqa: BLE001 - e.g. DynamoDB paused: try again later
                logger.warning("usage stream poll failed: %s", exc)
            stop.wait(interval)


def logs_event(messages: Iterable[str], *, log_group: str) -> dict[str, Any]:
    """A CloudWatch Logs subscription event carrying these log messages."""
    now = int(time.time() * 1000)
    data = {
        "messageType": "DATA_MESSAGE",
        "owner": "000000000000",
        "logGroup": log_group,
        "logStream": "local",
        "subscriptionFilters": ["usage-record-unwritten"],
        "logEvents": [
            {"id": uuid.uuid4().hex, "timestamp": now, "message": message} for message in messages
        ],
    }
    payload = base64.b64encode(gzip.compress(json.dumps(data).encode())).decode()
    return {"awslogs": {"data": payload}}


def matches_unwritten(line: str) -> bool:
    """`{ $.message = "usage_record_unwritten" }`: JSON lines whose message is that."""
    start = line.find("{")
    if start < 0:
        return False
    try:
        value = json.loads(line[start:])
    except ValueError:
        return False
    return isinstance(value, dict) and value.get("message") == UNWRITTEN_MESSAGE


class LogSubscription:
    def __init__(self, *, handler: Handler, log_group: str = "/aws/lambda/local-stream") -> None:
        self._handler = handler
        self._log_group = log_group
        self.delivered = 0

    def deliver(self, lines: Iterable[str]) -> dict[str, Any] | None:
        """Send the matching lines in one event; None if none matched."""
        matching = [line.strip() for line in lines if matches_unwritten(line)]
        if not matching:
            return None
        response = self._handler(logs_event(matching, log_group=self._log_group))
        self.delivered += len(matching)
        return response
