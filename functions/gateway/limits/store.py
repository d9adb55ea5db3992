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

Settling happens off the request path: the record carries what was reserved (`reserved_*`),
and the aggregator (usage/aggregate.py) adds `used - reserved` to these items, once per
record; a window only while its minute lasts. A budget's admission is marked on the month
item, so one whose answer was lost is settled too, once, if it landed (limits/admission.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread

from gateway import layout
from gateway.aws import ConditionFailed, botocore_errors, items, retry_quickly
from gateway.errors import DependencyError
from gateway.keys.apikey import ApiKey
from gateway.layout import month_sk, number, window_sk
from gateway.limits.admission import Admission, granted, unconfirmed
from gateway.limits.items import (
    item_key,
    marker_attribute,
    month_of,
    old_item,
    until_next_minute,
    until_next_month,
    window_attributes,
)
from gateway.limits.markers import SettledMarkers
from gateway.limits.refusals import (
    landed_before,
    month_headers,
    refuse_impossible,
    window_headers,
    window_refusal,
)
from gateway.limits.updates import month_update, window_update

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient


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
        # Markers of this instance's confirmed admissions, for its next admissions to remove.
        self._settled = SettledMarkers()

    # -- admission ---------------------------------------------------------------------

    async def admit_within(self, *, key: ApiKey, reserve_tokens: int, request_id: str) -> Admission:
        """`plan`, then `admit_planned`: the admission of one request, bounded by the
        admission deadline."""
        if not key.has_limits:
            return Admission(key_id=key.key_id)
        planned = self.plan(key=key, reserve_tokens=reserve_tokens, request_id=request_id)
        return await self.admit_planned(key=key, planned=planned)

    async def admit_planned(self, *, key: ApiKey, planned: Admission) -> Admission:
        """The planned admission's update in a worker thread, within the admission
        deadline: past it a 503 (DependencyError), even if a call still hangs; cancelled
        (the client left), it returns at once, the call going on in its thread. For a
        budget, an unknown outcome (the deadline, DynamoDB failing) raises
        AdmissionUnconfirmedError, carrying the admission for the record."""
        deadline = time.monotonic() + self._deadline_seconds
        try:
            with anyio.fail_after(self._deadline_seconds):
                admission = await anyio.to_thread.run_sync(
                    lambda: self._take(key, planned, deadline), abandon_on_cancel=True
                )
        except TimeoutError:
            message = f"DynamoDB did not answer within {self._deadline_seconds:g}s (rate limits)"
            raise unconfirmed(key, planned, message) from None
        except DependencyError as exc:
            raise unconfirmed(key, planned, exc.message) from exc
        self._confirm(admission)  # only now: an abandoned call's late answer confirms nothing
        return admission

    def admit(
        self,
        *,
        key: ApiKey,
        reserve_tokens: int,
        deadline: float | None = None,
        request_id: str | None = None,
    ) -> Admission:
        """Count the request against the key's limits and reserve its worst-case tokens.
        Raises RateLimitError (429, with Retry-After and x-ratelimit-* headers) when a
        limit refuses it (BudgetExceededError for the budget); a refused request consumes
        nothing. Raises DependencyError if DynamoDB fails; conflicts and throttling are
        retried quickly until `deadline` (time.monotonic(); None: a few). With a
        `request_id`, a budget's admission is marked on the month item (admit_within)."""
        planned = self.plan(key=key, reserve_tokens=reserve_tokens, request_id=request_id)
        admission = self._take(key, planned, deadline)
        self._confirm(admission)
        return admission

    def plan(self, *, key: ApiKey, reserve_tokens: int, request_id: str | None) -> Admission:
        """What admitting this request would reserve, and where, with no call yet (a
        request that could never fit is refused now, a 429). Until `admit_planned`
        answers, the request's record carries `in_flight(key, planned)`: a client that
        leaves meanwhile cancels the admission, whose update may still land."""
        if reserve_tokens < 0:
            raise ValueError("reserve_tokens must be >= 0")
        rpm, tpm, budget = key.rpm, key.tpm, key.monthly_tokens
        if rpm is None and tpm is None and budget is None:
            return Admission(key_id=key.key_id)
        now = self._clock()
        refuse_impossible(key, reserve_tokens)
        month = month_of(now) if budget is not None else None
        marked = month is not None and request_id is not None
        return Admission(
            key_id=key.key_id,
            reserved_tokens=reserve_tokens if tpm is not None or budget is not None else 0,
            window_minute=int(now // 60) if rpm is not None or tpm is not None else None,
            month=month,
            marker=marker_attribute(request_id) if marked and request_id is not None else None,
            sent_ms=int(now * 1000) if marked else None,
        )

    def _take(self, key: ApiKey, planned: Admission, deadline: float | None) -> Admission:
        """Make the planned admission's conditional update; the admission with headers."""
        if key.rpm is None and key.tpm is None and key.monthly_tokens is None:
            return planned
        now = self._clock()
        minute = planned.window_minute  # the minute the plan counted in (rpm or tpm)
        if planned.month is not None:
            headers = self._take_month(key, planned, minute, now, deadline)
        else:
            assert minute is not None
            headers = self._take_window(key, minute, planned.reserved_tokens, now, deadline)
        return granted(key, replace(planned, headers=headers))

    def _confirm(self, admission: Admission) -> None:
        """The admission landed, as this instance knows: its marker can go."""
        if admission.marker is not None and admission.month is not None:
            self._settled.add((admission.key_id, admission.month), [admission.marker])

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
        planned: Admission,
        minute: int | None,
        now: float,
        deadline: float | None,
    ) -> dict[str, str]:
        """The budget, and the window's limits too if the key has them: one UpdateItem,
        which marks the admission and removes settled markers (month_update)."""
        budget = key.monthly_tokens
        assert budget is not None and planned.month is not None
        month, reserve = planned.month, planned.reserved_tokens
        sk = month_sk(month)
        settled = self._settled.take((key.key_id, month)) if planned.marker is not None else []
        update = month_update(
            key, minute, reserve, marker=planned.marker, sent_ms=planned.sent_ms, settled=settled
        )
        try:
            new: dict[str, Any] = dict(
                self._update(key.key_id, sk, update, deadline).get("Attributes", {})
            )
        except ConditionFailed as exc:
            self._settled.add((key.key_id, month), settled)
            old = old_item(exc)
            if old is None:
                old = self._get(key.key_id, sk)
            new = landed_before(key, planned, minute, old, now)
        except BaseException:
            self._settled.add((key.key_id, month), settled)
            raise
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
