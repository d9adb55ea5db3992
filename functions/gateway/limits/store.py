"""Per-key limits: requests and tokens per minute, and a token budget per UTC month.

Every Lambda instance serving a key shares the same counters, so the limits hold however
many instances there are: each check is one atomic conditional UpdateItem in the usage
table. Items (beside usage/records.py's, under the key's own partition `key#<key_id>`):

- minute window  sk `win#<YYYY-MM-DDTHH:MM>` (UTC): `requests` and `tokens` (N), and
  `expires_at` (TTL, 5 minutes after the minute ends). Written only for keys with rpm or
  tpm. A fixed window: it resets at the top of each minute.
- month budget   sk `month#<YYYY-MM>` (UTC): `tokens` (N). Kept, like the daily rollups.
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

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread
from botocore.exceptions import ClientError

from gateway.aws import ConditionFailed, botocore_errors, retry_quickly
from gateway.errors import DependencyError, RateLimitError
from gateway.keys.apikey import ApiKey
from gateway.usage.records import key_pk

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

logger = logging.getLogger(__name__)

# How long a minute window outlives its minute before TTL may delete it.
WINDOW_TTL_SECONDS = 300
# Window attributes on a month item: each admission removes this many earlier minutes'.
STALE_MINUTES = 5


def window_attributes(minute: int) -> tuple[str, str]:
    """The (requests, tokens) attribute names of a minute window on a month item."""
    return f"w{minute}r", f"w{minute}t"


LIMIT_REQUESTS = "x-ratelimit-limit-requests"
REMAINING_REQUESTS = "x-ratelimit-remaining-requests"
RESET_REQUESTS = "x-ratelimit-reset-requests"
LIMIT_TOKENS = "x-ratelimit-limit-tokens"
REMAINING_TOKENS = "x-ratelimit-remaining-tokens"
RESET_TOKENS = "x-ratelimit-reset-tokens"
# The monthly budget has no OpenAI header; these follow the same pattern.
LIMIT_TOKENS_MONTH = "x-ratelimit-limit-tokens-month"
REMAINING_TOKENS_MONTH = "x-ratelimit-remaining-tokens-month"
RESET_TOKENS_MONTH = "x-ratelimit-reset-tokens-month"
RETRY_AFTER = "Retry-After"
# Read by the openai SDKs: do not retry a request that cannot succeed soon.
SHOULD_RETRY = "x-should-retry"


class BudgetExceededError(RateLimitError):
    """The key's monthly token budget cannot cover this request (429, like OpenAI's)."""

    type = "insufficient_quota"
    code = "insufficient_quota"


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


def window_sk(minute: int) -> str:
    return "win#" + datetime.fromtimestamp(minute * 60, UTC).strftime("%Y-%m-%dT%H:%M")


def month_sk(month: str) -> str:
    return f"month#{month}"


def month_of(now: float) -> str:
    return datetime.fromtimestamp(now, UTC).strftime("%Y-%m")


def next_month_start(now: float) -> float:
    dt = datetime.fromtimestamp(now, UTC)
    year, month = (dt.year + 1, 1) if dt.month == 12 else (dt.year, dt.month + 1)
    return datetime(year, month, 1, tzinfo=UTC).timestamp()


def duration(seconds: int) -> str:
    """OpenAI's reset format: "12s", "6m0s", "3h2m1s"."""
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes}m{seconds}s"


def _seconds_until(moment: float, now: float) -> int:
    return max(1, math.ceil(moment - now))


def _until_next_month(now: float) -> int:
    return _seconds_until(next_month_start(now), now)


def _num(item: dict[str, Any] | None, name: str) -> int:
    if not item or name not in item:
        return 0
    return int(item[name]["N"])


def _old_item(exc: ConditionFailed) -> dict[str, Any] | None:
    """The item as the failed condition saw it (ReturnValuesOnConditionCheckFailure)."""
    cause = exc.__cause__
    if isinstance(cause, ClientError):
        response: dict[str, Any] = dict(cause.response)
        item = response.get("Item")
        if isinstance(item, dict):
            return item
    return None


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
        self._refuse_impossible(key, reserve_tokens, now)
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

    def _refuse_impossible(self, key: ApiKey, reserve: int, now: float) -> None:
        """Refuse, without a call, a request that no amount of waiting would admit: a 429
        (OpenAI's answer to a request above a limit) with `x-should-retry: false` and no
        Retry-After, whose message names the reservation and how to make it fit."""
        headers = {SHOULD_RETRY: "false"}

        def advice(limit: int) -> str:
            return (
                "The gateway reserves a request's worst case before sending it: its prompt "
                "tokens plus max_tokens for each choice (n); a request without max_tokens or "
                "max_completion_tokens reserves the gateway's default (DEFAULT_MAX_TOKENS, "
                "4096 unless configured). Set max_tokens so that the prompt plus "
                f"n * max_tokens is at most {limit}, or shorten the prompt. Waiting will not help."
            )

        if key.rpm is not None and key.rpm < 1:
            raise RateLimitError(
                "This API key allows no requests (rpm is 0): ask its owner to raise its rpm.",
                headers=headers,
            )
        if key.tpm is not None and reserve > key.tpm:
            raise RateLimitError(
                f"Request too large for tokens per minute (TPM): limit {key.tpm}, "
                f"requested {reserve}. {advice(key.tpm)}",
                param="max_tokens",
                headers={**headers, LIMIT_TOKENS: str(key.tpm)},
            )
        if key.monthly_tokens is not None and reserve > key.monthly_tokens:
            raise BudgetExceededError(
                f"Request too large for the monthly token budget: limit {key.monthly_tokens}, "
                f"requested {reserve}. {advice(key.monthly_tokens)}",
                param="max_tokens",
                headers={**headers, LIMIT_TOKENS_MONTH: str(key.monthly_tokens)},
            )

    def _take_window(
        self, key: ApiKey, minute: int, reserve: int, now: float, deadline: float | None
    ) -> dict[str, str]:
        rpm, tpm = key.rpm, key.tpm
        adds: list[str] = []
        conditions: list[str] = []
        values: dict[str, Any] = {":exp": {"N": str((minute + 1) * 60 + WINDOW_TTL_SECONDS)}}
        if rpm is not None:
            adds.append("requests :one")
            conditions.append("(attribute_not_exists(requests) OR requests < :rpm)")
            values[":one"] = {"N": "1"}
            values[":rpm"] = {"N": str(rpm)}
        if tpm is not None:
            adds.append("tokens :reserve")
            conditions.append("(attribute_not_exists(tokens) OR tokens <= :room)")
            values[":reserve"] = {"N": str(reserve)}
            values[":room"] = {"N": str(tpm - reserve)}
        reset = _seconds_until((minute + 1) * 60, now)
        try:
            response = self._update(
                deadline,
                Key=self._key(key.key_id, window_sk(minute)),
                UpdateExpression="ADD " + ", ".join(adds) + " SET expires_at = :exp",
                ConditionExpression=" AND ".join(conditions),
                ExpressionAttributeValues=values,
            )
        except ConditionFailed as exc:
            old = _old_item(exc)
            if old is None:  # not returned (older DynamoDB emulators): read it instead
                old = self._get(key.key_id, window_sk(minute))
            raise self._window_refusal(key, reserve, old, reset) from None
        new: dict[str, Any] = dict(response.get("Attributes", {}))
        return self._window_headers(
            key, requests=_num(new, "requests"), tokens=_num(new, "tokens"), reset=reset
        )

    @staticmethod
    def _window_headers(key: ApiKey, *, requests: int, tokens: int, reset: int) -> dict[str, str]:
        headers: dict[str, str] = {}
        if key.rpm is not None:
            headers[LIMIT_REQUESTS] = str(key.rpm)
            headers[REMAINING_REQUESTS] = str(max(0, key.rpm - requests))
            headers[RESET_REQUESTS] = duration(reset)
        if key.tpm is not None:
            headers[LIMIT_TOKENS] = str(key.tpm)
            headers[REMAINING_TOKENS] = str(max(0, key.tpm - tokens))
            headers[RESET_TOKENS] = duration(reset)
        return headers

    def _window_refusal(
        self, key: ApiKey, reserve: int, old: dict[str, Any] | None, reset: int
    ) -> RateLimitError:
        requests, tokens = _num(old, "requests"), _num(old, "tokens")
        reasons: list[str] = []
        if key.rpm is not None and requests >= key.rpm:
            reasons.append(f"requests per minute (RPM): limit {key.rpm}, used {requests}")
        if key.tpm is not None and tokens + reserve > key.tpm:
            reasons.append(
                f"tokens per minute (TPM): limit {key.tpm}, used {tokens}, requested {reserve}"
            )
        if not reasons:  # the counters moved (settled) since the condition failed
            reasons.append("requests per minute" if key.tpm is None else "tokens per minute")
        headers = self._window_headers(key, requests=requests, tokens=tokens, reset=reset)
        headers[RETRY_AFTER] = str(reset)
        return RateLimitError(
            f"Rate limit reached for {'; '.join(reasons)}. Please try again in {reset}s.",
            headers=headers,
        )

    def _update(self, deadline: float | None, **kwargs: Any) -> dict[str, Any]:
        """One conditional UpdateItem returning the new counts, retried quickly while the
        item is busy in a transaction or throttled."""

        def call() -> dict[str, Any]:
            with botocore_errors("DynamoDB"):
                return dict(
                    self._client.update_item(
                        TableName=self._table,
                        ReturnValues="UPDATED_NEW",
                        ReturnValuesOnConditionCheckFailure="ALL_OLD",
                        **kwargs,
                    )
                )

        return retry_quickly(call, deadline=deadline)

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
        adds = ["tokens :reserve"]
        conditions = ["(attribute_not_exists(tokens) OR tokens <= :room)"]
        values: dict[str, Any] = {
            ":reserve": {"N": str(reserve)},
            ":room": {"N": str(budget - reserve)},
        }
        names: dict[str, str] = {}
        removes: list[str] = []
        if minute is not None:
            names["#wr"], names["#wt"] = window_attributes(minute)
            if key.rpm is not None:
                adds.append("#wr :one")
                conditions.append("(attribute_not_exists(#wr) OR #wr < :rpm)")
                values.update({":one": {"N": "1"}, ":rpm": {"N": str(key.rpm)}})
            if key.tpm is not None:
                adds.append("#wt :reserve")
                conditions.append("(attribute_not_exists(#wt) OR #wt <= :troom)")
                values[":troom"] = {"N": str(key.tpm - reserve)}
            for back in range(1, STALE_MINUTES + 1):
                for i, name in enumerate(window_attributes(minute - back)):
                    names[f"#old{back}{i}"] = name
                    removes.append(f"#old{back}{i}")
            names = {n: v for n, v in names.items() if n in " ".join(adds + removes + conditions)}
        expression = "ADD " + ", ".join(adds) + (" REMOVE " + ", ".join(removes) if removes else "")
        extra = {"ExpressionAttributeNames": names} if names else {}
        try:
            response = self._update(
                deadline,
                Key=self._key(key.key_id, month_sk(month)),
                UpdateExpression=expression,
                ConditionExpression=" AND ".join(conditions),
                ExpressionAttributeValues=values,
                **extra,
            )
        except ConditionFailed as exc:
            old = _old_item(exc)
            if old is None:
                old = self._get(key.key_id, month_sk(month))
            raise self._month_refusal(key, minute, reserve, old, now) from None
        new: dict[str, Any] = dict(response.get("Attributes", {}))
        headers = self._month_headers(budget, _num(new, "tokens"), _until_next_month(now))
        if minute is not None:
            requests, tokens = (_num(new, a) for a in window_attributes(minute))
            reset = _seconds_until((minute + 1) * 60, now)
            headers.update(self._window_headers(key, requests=requests, tokens=tokens, reset=reset))
        return headers

    def _month_refusal(
        self, key: ApiKey, minute: int | None, reserve: int, old: dict[str, Any] | None, now: float
    ) -> RateLimitError:
        """Which limit refused: the window's (a 429 to retry soon), else the budget's."""
        budget = key.monthly_tokens
        assert budget is not None
        if minute is not None:
            requests, tokens = (_num(old, a) for a in window_attributes(minute))
            over_rpm = key.rpm is not None and requests >= key.rpm
            over_tpm = key.tpm is not None and tokens + reserve > key.tpm
            if over_rpm or over_tpm:
                window = {"requests": {"N": str(requests)}, "tokens": {"N": str(tokens)}}
                reset = _seconds_until((minute + 1) * 60, now)
                return self._window_refusal(key, reserve, window, reset)
        reset = _until_next_month(now)
        used = _num(old, "tokens")
        headers = self._month_headers(budget, used, reset)
        headers[RETRY_AFTER] = str(reset)
        headers[SHOULD_RETRY] = "false"
        resets_at = datetime.fromtimestamp(next_month_start(now), UTC)
        return BudgetExceededError(
            f"Monthly token budget exhausted: limit {budget}, used {used}, "
            f"requested {reserve}. It resets at {resets_at:%Y-%m-%dT%H:%M:%SZ}.",
            headers=headers,
        )

    @staticmethod
    def _month_headers(budget: int, used: int, reset: int) -> dict[str, str]:
        return {
            LIMIT_TOKENS_MONTH: str(budget),
            REMAINING_TOKENS_MONTH: str(max(0, budget - used)),
            RESET_TOKENS_MONTH: duration(reset),
        }

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
            return _num(counter, "tokens")
        total = 0
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :prefix)",
            "ProjectionExpression": "total_tokens",
            "ExpressionAttributeValues": {
                ":pk": {"S": key_pk(key_id)},
                ":prefix": {"S": f"day#{month}-"},
            },
        }
        with botocore_errors("DynamoDB"):
            while True:
                response = self._client.query(**kwargs)
                total += sum(_num(dict(item), "total_tokens") for item in response["Items"])
                if "LastEvaluatedKey" not in response:
                    return total
                kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]

    def _get(self, key_id: str, sk: str) -> dict[str, Any] | None:
        with botocore_errors("DynamoDB"):
            response = self._client.get_item(
                TableName=self._table, Key=self._key(key_id, sk), ConsistentRead=True
            )
        item = response.get("Item")
        return dict(item) if item is not None else None

    @staticmethod
    def _key(key_id: str, sk: str) -> dict[str, Any]:
        return {"pk": {"S": key_pk(key_id)}, "sk": {"S": sk}}
