"""Endpoint load shared by every gateway instance: one small item per endpoint.

The item (usage table, `pk = endpoints#<model>`, `sk = load#<endpoint>`; layout.py) holds
what the endpoint's `/metrics` said: `running`, `waiting`, `kv_usage` (absent when the
server has no vLLM gauges), `sampled_at` (epoch seconds), and `claimed_at`, when an
instance last took the job of sampling it. Every instance reads its endpoints' items with
one BatchGetItem per interval (backends/load.py, in the background); the one whose
conditional claim wins scrapes the server and writes the figures, so across any number of
instances an endpoint is scraped about once per interval. docs/ROUTING.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gateway import layout
from gateway.aws import ConditionFailed, botocore_errors
from gateway.errors import DependencyError

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

# A sample is of no use after seconds; the TTL only keeps the table tidy.
KEEP_SECONDS = 3_600
# BatchGetItem's limit of keys per call.
_BATCH = 100

Endpoint = tuple[str, str]  # (model, endpoint name), the item's identity


@dataclass(frozen=True)
class Figures:
    """The gauges a /metrics page reported."""

    running: float
    waiting: float
    kv_usage: float


@dataclass(frozen=True)
class SharedSample:
    """An endpoint's item: its last figures (None: the server reported none) and when
    they were sampled and when an instance last claimed the sampling (epoch seconds)."""

    figures: Figures | None
    sampled_at: float
    claimed_at: float


class LoadStore:
    """The items themselves (synchronous boto3 calls; LoadSampler runs them off the loop)."""

    def __init__(self, *, client: DynamoDBClient, table: str) -> None:
        self._client = client
        self._table = table

    def read(self, *, endpoints: Sequence[Endpoint]) -> dict[Endpoint, SharedSample]:
        """The items of `endpoints` that exist (eventually consistent reads: a sample is a
        second old anyway). DependencyError: DynamoDB failed, or left keys unprocessed
        (throttling) twice."""
        unique = list(dict.fromkeys(endpoints))
        found: dict[Endpoint, SharedSample] = {}
        for start in range(0, len(unique), _BATCH):
            keys = [_key(*endpoint) for endpoint in unique[start : start + _BATCH]]
            for item in self._batch_get(keys):
                values = layout.from_item(item)
                model = str(values["pk"]).removeprefix(layout.endpoints_pk(""))
                name = str(values["sk"]).removeprefix(layout.LOAD)
                found[(model, name)] = _sample(values)
        return found

    def claim(self, *, model: str, endpoint: str, now: float, interval: float) -> bool:
        """Take the job of sampling the endpoint now, unless another instance took it less
        than `interval` seconds ago (False: it did; its figures will be in the item)."""
        try:
            with botocore_errors("DynamoDB"):
                self._client.update_item(
                    TableName=self._table,
                    Key=_key(model, endpoint),
                    UpdateExpression="SET claimed_at = :now, expires_at = :expires",
                    ConditionExpression="attribute_not_exists(claimed_at) OR claimed_at <= :stale",
                    ExpressionAttributeValues=layout.to_item(
                        {
                            ":now": now,
                            ":stale": now - interval,
                            ":expires": int(now + KEEP_SECONDS),
                        }
                    ),
                )
        except ConditionFailed:
            return False
        return True

    def put(self, *, model: str, endpoint: str, figures: Figures | None, sampled_at: float) -> None:
        """Write what the server reported (None: no vLLM gauges) at `sampled_at`."""
        values: dict[str, Any] = {":at": sampled_at, ":expires": int(sampled_at + KEEP_SECONDS)}
        update = "SET sampled_at = :at, expires_at = :expires"
        if figures is None:
            update += " REMOVE running, waiting, kv_usage"
        else:
            update += ", running = :running, waiting = :waiting, kv_usage = :kv"
            values |= {
                ":running": figures.running,
                ":waiting": figures.waiting,
                ":kv": figures.kv_usage,
            }
        with botocore_errors("DynamoDB"):
            self._client.update_item(
                TableName=self._table,
                Key=_key(model, endpoint),
                UpdateExpression=update,
                ExpressionAttributeValues=layout.to_item(values),
            )

    def _batch_get(self, keys: list[dict[str, Any]]) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        request: Any = {self._table: {"Keys": keys}}
        for _ in range(2):  # one quick retry of what DynamoDB left unprocessed
            with botocore_errors("DynamoDB"):
                response = self._client.batch_get_item(RequestItems=request)
            items.extend(response.get("Responses", {}).get(self._table, []))
            request = response.get("UnprocessedKeys") or {}
            if not request:
                return items
        raise DependencyError("DynamoDB left endpoint load items unread (throttled)")


def _key(model: str, endpoint: str) -> dict[str, Any]:
    return layout.item_key(layout.endpoints_pk(model), layout.load_sk(endpoint))


def _sample(values: dict[str, Any]) -> SharedSample:
    figures = None
    if "running" in values or "waiting" in values:
        figures = Figures(
            running=float(values.get("running", 0)),
            waiting=float(values.get("waiting", 0)),
            kv_usage=float(values.get("kv_usage", 0)),
        )
    return SharedSample(
        figures=figures,
        sampled_at=float(values.get("sampled_at", 0)),
        claimed_at=float(values.get("claimed_at", 0)),
    )
