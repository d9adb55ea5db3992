"""Per-key limits: requests and tokens per minute, and a token budget per UTC month.

Every Lambda instance serving a key shares the same counters, so the limits hold however
many instances there are: each check is one atomic conditional UpdateItem in the usage
table (docs/USAGE.md; keys from layout.py), under the key's own partition:

- minute window (UTC minute): `requests` and `tokens` (N), and
  `expires_at` (TTL, 5 minutes after the minute ends). Written only for keys with rpm or
  tpm. A fixed window: it resets at the top of each minute.
- month budget (UTC month): `tokens` (N). Kept, like the daily rollups.
  Written only for keys with monthly_tokens. For a key that also has rpm or tpm, the
  minute window lives on this item too, as attributes `w<epoch minute>r` (requests) and
  `w<epoch minute>t` (tokens); each admission removes the previous minutes' ones.

Admission (`LimitStore.admit`) reserves the request's worst case (prompt tokens plus its
max tokens) before the request is forwarded, in ONE conditional UpdateItem:

- a key with rpm/tpm only: on the window item, `ADD requests :1, tokens :reserve` on
  condition `requests < rpm AND tokens <= tpm - reserve` (each side only for the limits
  the key has; a missing attribute passes);
- a key with a budget: on the month item, `ADD tokens :reserve` on condition
  `tokens <= monthly_tokens - reserve`, plus the window's attributes and conditions if
  the key has rpm/tpm, so every limit is checked and counted atomically.

`ReturnValues=UPDATED_NEW` gives the counts after this request, for the x-ratelimit-*
headers. So admission costs 0 DynamoDB calls for a key without limits and 1 for a key
with any. On a refusal the failed update returns the item as it was
(`ReturnValuesOnConditionCheckFailure=ALL_OLD`), which tells which limit tripped, at no
extra call; a refused request consumes nothing. A request that could never fit (its
reservation alone is above tpm or the budget, or rpm is 0) is refused without any call.

Both updates touch only the key's own items. An item may be busy in the aggregator's
settling transaction (TransactionConflictException): that, and throttling, are retried
after a few milliseconds, within the admission deadline; past it, admission refuses with a
503 (DependencyError). `admit_within` bounds the whole admission, stuck calls included.

Settling happens off the request path: the usage record carries what was reserved
(`reserved_tokens`, `reserved_window_minute`, `reserved_month`, copied from the Admission),
and the aggregator (usage/aggregate.py) adds `used - reserved` to these items, once per
record. The window is settled only while its minute lasts (later it limits nothing).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread

from gateway import layout
from gateway.aws import ConditionFailed, botocore_errors, items, retry_quickly
from gateway.errors import DependencyError
from gateway.keys.apikey import ApiKey
from gateway.layout import month_sk, number, window_sk
from gateway.limits.items import (
    item_key,
    month_of,
    old_item,
    until_next_minute,
    until_next_month,
    window_attributes,
)
from gateway.limits.refusals import (
    month_headers,
    month_refusal,
    refuse_impossible,
    window_headers,
    window_refusal,
)
from gateway.limits.updates import month_update, window_update

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient


@dataclass(frozen=True)
class Admission:
    """What admission granted, and what settling needs."""

    key_id: str
    # Tokens reserved (in the window if the key has tpm, in the month if it has a budget).
    reserved_tokens: int = 0
    # x-ratelimit-* headers for the response (empty for a key without limits).
    headers: dict[str, str] = field(default_factory=dict)
    # Epoch minute whose window holds the token reservation (keys with tpm).
    window_minute: int | None = None
    # "YYYY-MM" whose budget holds the token reservation (keys with monthly_tokens).
    month: str | None = None


class LimitStore:
    def __init__(
        self,
        *,
        client: DynamoDBClient,
        table: str,
        clock: Callable[[], float] = time.time,
        deadline_seconds: float = 1.0,
    ) -> None:
        self._client = client
        self._table = table
        self._clock = clock
        self._deadline_seconds = deadline_seconds

    # -- admission ---------------------------------------------------------------------

    # -- admission ---------------------------------------------------------------------

    async def admit_within(self, *, key: ApiKey, reserve_tokens: int) -> Admission:
        """`admit` in a worker thread, bounded by the admission deadline: past it the
        request is refused with DependencyError (a 503), even if a call still hangs."""
        if not key.has_limits:
            return Admission(key_id=key.key_id)
        deadline = time.monotonic() + self._deadline_seconds
        try:
            with anyio.fail_after(self._deadline_seconds):
                return await anyio.to_thread.run_sync(
                    lambda: self.admit(key=key, reserve_tokens=reserve_tokens, deadline=deadline),
                    abandon_on_cancel=True,
                )
        except TimeoutError:
            raise DependencyError(
                f"DynamoDB did not answer within {self._deadline_seconds:g}s (rate limits)"
            ) from None

    def admit(
        self, *, key: ApiKey, reserve_tokens: int, deadline: float | None = None
    ) -> Admission:
        """Count the request against the key's limits and reserve its worst-case tokens.

        Raises RateLimitError (429, with Retry-After and x-ratelimit-* headers) when a
        limit refuses it (BudgetExceededError for the monthly budget); a refused request
        consumes nothing. Raises DependencyError if DynamoDB fails; conflicts and
        throttling are retried quickly until `deadline` (time.monotonic(); None: a few).
        """
        if reserve_tokens < 0:
            raise ValueError("reserve_tokens must be >= 0")
        rpm, tpm, budget = key.rpm, key.tpm, key.monthly_tokens
        if rpm is None and tpm is None and budget is None:
            return Admission(key_id=key.key_id)
        now = self._clock()
        refuse_impossible(key, reserve_tokens)
        reserved = reserve_tokens if tpm is not None or budget is not None else 0
        minute = int(now // 60) if rpm is not None or tpm is not None else None
        month = month_of(now) if budget is not None else None
        if month is not None:
            headers = self._take_month(key, month, minute, reserve_tokens, now, deadline)
        else:
            assert minute is not None
            headers = self._take_window(key, minute, reserve_tokens, now, deadline)
        return Admission(
            key_id=key.key_id,
            reserved_tokens=reserved,
            headers=headers,
            window_minute=minute if tpm is not None else None,
            month=month,
        )

    def _take_window(
        self, key: ApiKey, minute: int, reserve: int, now: float, deadline: float | None
    ) -> dict[str, str]:
        reset = until_next_minute(minute, now)
        sk = window_sk(minute)
        try:
            response = self._update(key.key_id, sk, window_update(key, minute, reserve), deadline)
        except ConditionFailed as exc:
            old = old_item(exc)
            if old is None:  # not returned (older DynamoDB emulators): read it instead
                old = self._get(key.key_id, sk)
            raise window_refusal(key, reserve, old, reset) from None
        new: dict[str, Any] = dict(response.get("Attributes", {}))
        return window_headers(
            key, requests=number(new, "requests"), tokens=number(new, "tokens"), reset=reset
        )

    def _take_month(
        self,
        key: ApiKey,
        month: str,
        minute: int | None,
        reserve: int,
        now: float,
        deadline: float | None,
    ) -> dict[str, str]:
        """The budget, and the window's limits too if the key has them: one UpdateItem."""
        budget = key.monthly_tokens
        assert budget is not None
        sk = month_sk(month)
        try:
            response = self._update(key.key_id, sk, month_update(key, minute, reserve), deadline)
        except ConditionFailed as exc:
            old = old_item(exc)
            if old is None:
                old = self._get(key.key_id, sk)
            raise month_refusal(key, minute, reserve, old, now) from None
        new: dict[str, Any] = dict(response.get("Attributes", {}))
        headers = month_headers(budget, number(new, "tokens"), until_next_month(now))
        if minute is not None:
            requests, tokens = (number(new, a) for a in window_attributes(minute))
            reset = until_next_minute(minute, now)
            headers.update(window_headers(key, requests=requests, tokens=tokens, reset=reset))
        return headers

    def _update(
        self, key_id: str, sk: str, update: dict[str, Any], deadline: float | None
    ) -> dict[str, Any]:
        """One conditional UpdateItem (`update`: its expressions) of the key's item `sk`,
        returning the new counts, retried quickly while the item is busy in a transaction
        or throttled."""

        def call() -> dict[str, Any]:
            with botocore_errors("DynamoDB"):
                return dict(
                    self._client.update_item(
                        TableName=self._table,
                        Key=item_key(key_id, sk),
                        ReturnValues="UPDATED_NEW",
                        ReturnValuesOnConditionCheckFailure="ALL_OLD",
                        **update,
                    )
                )

        return retry_quickly(call, deadline=deadline)

    # -- reading -----------------------------------------------------------------------

    def month_tokens(self, *, key_id: str, month: str | None = None) -> int:
        """Tokens the key used in a UTC month ("YYYY-MM", default this month).

        For a key with a budget: the budget's counter (settled usage plus reservations of
        requests still in flight, counted since the budget was set). Otherwise the sum of
        the month's daily usage rollups. One GetItem, plus one Query (per page) for a key
        without a budget counter.
        """
        month = month or month_of(self._clock())
        counter = self._get(key_id, month_sk(month))
        if counter is not None:
            return number(counter, "tokens")
        return sum(
            number(item, "total_tokens")
            for item in items(
                self._client,
                "query",
                TableName=self._table,
                KeyConditionExpression="pk = :pk AND begins_with(sk, :prefix)",
                ProjectionExpression="total_tokens",
                ExpressionAttributeValues={
                    ":pk": {"S": layout.key_pk(key_id)},
                    ":prefix": {"S": layout.month_days_prefix(month)},
                },
            )
        )

    def _get(self, key_id: str, sk: str) -> dict[str, Any] | None:
        with botocore_errors("DynamoDB"):
            response = self._client.get_item(
                TableName=self._table, Key=item_key(key_id, sk), ConsistentRead=True
            )
        item = response.get("Item")
        return dict(item) if item is not None else None
