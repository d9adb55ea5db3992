"""Endpoint cooldowns shared by every gateway instance: one small item per endpoint.

The items live in the usage table under a partition of their own per model (docs/USAGE.md;
keys from layout.py): cooled_until (epoch seconds), reason, updated_at, expires_at
(TTL). One Query reads a model's endpoints. The item is written only when an endpoint's state
changes (cooled down by an instance that saw it fail, set or cleared by the health probe),
never per request. It is not a raw record, so the usage stream's aggregator skips it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import anyio
import anyio.to_thread

from gateway import layout
from gateway.aws import botocore_errors, items
from gateway.errors import DependencyError

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

logger = logging.getLogger(__name__)

# Items outlive their cooldown by this much (TTL), so `endpoints list` can show recent ones.
KEEP_SECONDS = 86_400


@dataclass(frozen=True)
class Cooldown:
    endpoint: str
    until: float
    reason: str
    updated_at: float

    def active(self, now: float) -> bool:
        return self.until > now


class CooldownStore:
    """The items themselves (synchronous boto3 calls; CooldownCache runs them off the loop)."""

    def __init__(self, *, client: DynamoDBClient, table: str) -> None:
        self._client = client
        self._table = table

    def read(self, *, model: str) -> dict[str, Cooldown]:
        found: dict[str, Cooldown] = {}
        for item in items(
            self._client,
            "query",
            TableName=self._table,
            KeyConditionExpression="pk = :pk AND begins_with(sk, :sk)",
            ExpressionAttributeValues={
                ":pk": {"S": layout.endpoints_pk(model)},
                ":sk": {"S": layout.ENDPOINT},
            },
        ):
            values = layout.from_item(item)
            name = str(values["sk"]).removeprefix(layout.ENDPOINT)
            found[name] = Cooldown(
                endpoint=name,
                until=float(values.get("cooled_until", 0)),
                reason=str(values.get("reason", "")),
                updated_at=float(values.get("updated_at", 0)),
            )
        return found

    def put(self, *, model: str, endpoint: str, until: float, reason: str, now: float) -> None:
        """Cool `endpoint` down until `until` (0: clear it, keeping the item as history)."""
        with botocore_errors("DynamoDB"):
            self._client.put_item(
                TableName=self._table,
                Item=layout.to_item(
                    {
                        "pk": layout.endpoints_pk(model),
                        "sk": layout.endpoint_sk(endpoint),
                        "cooled_until": until,
                        "reason": reason[:200],
                        "updated_at": now,
                        "expires_at": int(max(until, now) + KEEP_SECONDS),
                    }
                ),
            )


class CooldownCache:
    """A model's cooldowns as this instance knows them: re-read from the store at most
    every `ttl` seconds (as API keys are), updated at once by this instance's own changes.
    A store that fails or is slow is logged and leaves the last known state in place:
    routing never fails a request because DynamoDB did."""

    def __init__(
        self,
        *,
        store: CooldownStore | None,
        ttl: float,
        deadline_seconds: float = 0.5,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._ttl = ttl
        self._deadline = deadline_seconds
        self._clock = clock
        self._known: dict[str, dict[str, Cooldown]] = {}
        self._read_at: dict[str, float] = {}

    def until(self, model: str, endpoint: str) -> float:
        cooldown = self._known.get(model, {}).get(endpoint)
        return cooldown.until if cooldown is not None else 0.0

    async def refresh(self, model: str) -> None:
        if self._store is None:
            return
        now = self._clock()
        if now - self._read_at.get(model, float("-inf")) < self._ttl:
            return
        self._read_at[model] = now  # one read per ttl, even when it fails
        store = self._store
        try:
            with anyio.fail_after(self._deadline):
                found = await anyio.to_thread.run_sync(
                    lambda: store.read(model=model), abandon_on_cancel=True
                )
        except (TimeoutError, DependencyError) as exc:
            logger.warning("endpoint cooldowns not read", extra={"model": model, "error": str(exc)})
            return
        self._known[model] = found

    async def set(self, model: str, endpoint: str, *, until: float, reason: str) -> None:
        """Record a state change here at once, and in the store for the other instances."""
        now = self._clock()
        self._known.setdefault(model, {})[endpoint] = Cooldown(endpoint, until, reason, now)
        if self._store is None:
            return
        store = self._store
        try:
            with anyio.fail_after(self._deadline):
                await anyio.to_thread.run_sync(
                    lambda: store.put(
                        model=model, endpoint=endpoint, until=until, reason=reason, now=now
                    ),
                    abandon_on_cancel=True,
                )
        except (TimeoutError, DependencyError) as exc:
            logger.warning(
                "endpoint cooldown not shared",
                extra={"model": model, "endpoint": endpoint, "error": str(exc)},
            )
