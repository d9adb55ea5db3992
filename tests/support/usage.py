"""Run the usage aggregator as Lambda's stream event source would (devstack.streams)."""

from __future__ import annotations

import os
from typing import Any

import boto3
from devstack.streams import StreamPoller
from devstack.tables import LOCAL_TABLE_NAMES
from gateway.usage.aggregate import Aggregator
from gateway.usage.batches import aggregate

TABLE = LOCAL_TABLE_NAMES["UsageTable"]


def poller(client: Any, table: str = TABLE, **kwargs: Any) -> StreamPoller:
    """A poller of `table`'s stream calling the aggregator's handler logic."""
    region = client.meta.region_name
    # moto's in-process mock serves streams at their classic address only.
    endpoint = os.environ.get("AWS_ENDPOINT_URL_DYNAMODB") or (
        f"https://streams.dynamodb.{region}.amazonaws.com"
    )
    streams = boto3.client("dynamodbstreams", endpoint_url=endpoint, region_name=region)
    aggregator = Aggregator(client=client, table=table, **kwargs)
    return StreamPoller(
        dynamodb=client,
        streams=streams,
        table=table,
        handler=lambda event: aggregate(event, aggregator=aggregator),
    )


# One poller per moto server and table, for the session: it keeps its stream position.
_POLLERS: dict[tuple[str, str], StreamPoller] = {}


def drain(client: Any, table: str = TABLE) -> None:
    """Aggregate everything in the usage stream so far, as the aggregator's event source
    would. On an in-process moto (fresh per test) a new poller reads the whole stream."""
    endpoint = os.environ.get("AWS_ENDPOINT_URL_DYNAMODB")
    if not endpoint:
        poller(client, table).drain()
        return
    if (endpoint, table) not in _POLLERS:
        _POLLERS[(endpoint, table)] = poller(boto3.client("dynamodb"), table)
    _POLLERS[(endpoint, table)].drain()
