"""Entry points of UsageAggregatorFunction (DynamoDB Streams batches of the usage table)
and UsageWritebackFunction (a CloudWatch Logs subscription on the chat function's
`usage_record_unwritten` lines). The work is gateway/usage/batches.py. Clients are built on
first use, once per process."""

from __future__ import annotations

from functools import cache
from typing import Any

from gateway.aws import AwsClients
from gateway.observability import configure_logging
from gateway.settings import Settings
from gateway.usage.aggregate import Aggregator
from gateway.usage.batches import aggregate, write_back
from gateway.usage.store import UsageStore


@cache
def _clients() -> tuple[Settings, AwsClients]:
    settings = Settings()
    configure_logging(settings.log_level)
    return settings, AwsClients()


def aggregate_handler(event: dict[str, Any], _context: Any) -> dict[str, Any]:
    settings, aws = _clients()
    return aggregate(event, aggregator=Aggregator(client=aws.dynamodb, table=settings.usage_table))


def writeback_handler(event: dict[str, Any], _context: Any) -> dict[str, int]:
    settings, aws = _clients()
    store = UsageStore(
        client=aws.dynamodb,
        table=settings.usage_table,
        retention_days=settings.usage_retention_days,
    )
    return write_back(event, store=store)
