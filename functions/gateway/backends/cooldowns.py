"""Endpoint cooldowns shared by every gateway instance: one small item per endpoint.

The items live in the usage table under a partition of their own per model (docs/USAGE.md;
keys from layout.py): cooled_until (epoch seconds), reason, updated_at, expires_at
(TTL), and backoff_until / backoff_reason when the endpoint last asked (Retry-After) to be
left alone. One Query reads a model's endpoints. The item is written only when an
endpoint's state changes (cooled down by an instance that saw it fail, set or cleared by
the health probe, a new Retry-After), never per request; each write sets only its own
attributes, so a cooldown and a backoff never erase each other. It is not a raw record, so
the usage stream's aggregator skips it.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import anyio
import anyio.to_thread

from gateway import layout
from gateway.aws import ConditionFailed, botocore_errors, items
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
    # Until when the endpoint asked (Retry-After, capped) to be left alone, and how.
    backoff_until: float = 0.0
    backoff_reason: str = ""

    def active(self, now: float) -> bool:
        return self.until > now

    def backing_off(self, now: float) -> bool:
        return self.backoff_until > now


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
                backoff_until=float(values.get("backoff_until", 0)),
                backoff_reason=str(values.get("backoff_reason", "")),
            )
        return found

    def put(self, *, model: str, endpoint: str, until: float, reason: str, now: float) -> None:
        """Cool `endpoint` down until `until` (0: clear it, keeping the item as history)."""
        self._set(
            model=model,
            endpoint=endpoint,
            values={"cooled_until": until, "reason": reason[:200], "updated_at": now},
            expires=int(max(until, now) + KEEP_SECONDS),
        )

    def put_backoff(
        self, *, model: str, endpoint: str, until: float, reason: str, now: float
    ) -> bool:
        """Record that `endpoint` asked to be left alone until `until`; a backoff already
        recorded that lasts as long or longer is kept (False: nothing written)."""
        try:
            self._set(
                model=model,
                endpoint=endpoint,
                values={"backoff_until": until, "backoff_reason": reason[:200], "updated_at": now},
                expires=int(max(until, now) + KEEP_SECONDS),
                longer_than="backoff_until",
            )
        except ConditionFailed:
            return False
        return True

    def _set(
        self,
        *,
        model: str,
        endpoint: str,
        values: dict[str, object],
        expires: int,
        longer_than: str | None = None,
    ) -> None:
        """SET `values` and the TTL on the endpoint's item (created if absent); with
        `longer_than`, only if that attribute is absent or below its new value."""
        names = {f"#{i}": name for i, name in enumerate(values)}
        updates = [f"#{i} = :{i}" for i in range(len(values))]
        attributes = layout.to_item({f":{i}": value for i, value in enumerate(values.values())})
        attributes |= layout.to_item({":expires": expires})
        extra: dict[str, str] = {}
        if longer_than is not None:
            index = list(values).index(longer_than)
            extra["ConditionExpression"] = f"attribute_not_exists(#{index}) OR #{index} < :{index}"
        with botocore_errors("DynamoDB"):
            self._client.update_item(
                TableName=self._table,
                Key=layout.to_item(
                    {"pk": layout.endpoints_pk(model), "sk": layout.endpoint_sk(endpoint)}
                ),
                UpdateExpression="SET " + ", ".join(updates) + ", expires_at = :expires",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=attributes,
                **extra,  # type: ignore[arg-type]
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

    def steered_until(self, model: str, endpoint: str) -> float:
        """Until when the endpoint is cooled down or backing off, whichever lasts longer."""
        cooldown = self._known.get(model, {}).get(endpoint)
        return max(cooldown.until, cooldown.backoff_until) if cooldown is not None else 0.0

    def backoff_until(self, model: str, endpoint: str) -> float:
        cooldown = self._known.get(model, {}).get(endpoint)
        return cooldown.backoff_until if cooldown is not None else 0.0

    async def set(self, model: str, endpoint: str, *, until: float, reason: str) -> None:
        """Record a state change here at once, and in the store for the other instances."""
        now = self._clock()
        known = self._known.setdefault(model, {})
        old = known.get(endpoint) or Cooldown(endpoint, 0.0, "", now)
        known[endpoint] = dataclasses.replace(old, until=until, reason=reason, updated_at=now)
        store = self._store
        if store is not None:
            await self._write(
                lambda: store.put(
                    model=model, endpoint=endpoint, until=until, reason=reason, now=now
                ),
                model=model,
                endpoint=endpoint,
            )

    async def backoff(self, model: str, endpoint: str, *, until: float, reason: str) -> None:
        """The endpoint asked (Retry-After) to be left alone until `until`: known here at
        once; shared only when it extends what this instance knew (one write per backoff
        per instance, and the store keeps the longest)."""
        now = self._clock()
        known = self._known.setdefault(model, {})
        old = known.get(endpoint) or Cooldown(endpoint, 0.0, "", now)
        if old.backoff_until >= until:
            return
        known[endpoint] = dataclasses.replace(
            old, backoff_until=until, backoff_reason=reason, updated_at=now
        )
        store = self._store
        if store is not None and old.backoff_until <= now:
            await self._write(
                lambda: store.put_backoff(
                    model=model, endpoint=endpoint, until=until, reason=reason, now=now
                ),
                model=model,
                endpoint=endpoint,
            )

    async def _write(self, call: Callable[[], object], *, model: str, endpoint: str) -> None:
        try:
            with anyio.fail_after(self._deadline):
                await anyio.to_thread.run_sync(call, abandon_on_cancel=True)
        except (TimeoutError, DependencyError) as exc:
            logger.warning(
                "endpoint state not shared",
                extra={"model": model, "endpoint": endpoint, "error": str(exc)},
            )
