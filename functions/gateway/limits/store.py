"""Per-key limits: requests and tokens per minute, and a token budget per UTC month.

Every Lambda instance serving a key shares the same counters, so the limits hold however
many instances there are: each check is one atomic conditional UpdateItem in the usage
table. Items (beside usage/records.py's, under the key's own partition `key#<key_id>`):

- minute window  sk `win#<YYYY-MM-DDTHH:MM>` (UTC): `requests` and `tokens` (N), and
  `expires_at` (TTL, 5 minutes after the minute ends). Written only for keys with rpm or
  tpm. A fixed window: it resets at the top of each minute.
- month budget   sk `month#<YYYY-MM>` (UTC): `tokens` (N). Kept, like the daily rollups.
  Written only for keys with monthly_tokens.

Admission (`LimitStore.admit`) reserves the request's worst case (prompt tokens plus its
max tokens) before the request is forwarded:

1. window (if rpm or tpm): `ADD requests :1, tokens :reserve` on condition
   `requests < rpm AND tokens <= tpm - reserve` (each side only for the limits the key has;
   a missing attribute passes). `ReturnValues=UPDATED_NEW` gives the counts after this
   request, for the x-ratelimit-* headers.
2. month (if monthly_tokens): `ADD tokens :reserve` on condition
   `tokens <= monthly_tokens - reserve`.

So admission costs 0 DynamoDB calls for a key without limits, 1 for a key with only
rpm/tpm or only a budget, and 2 for a key with both. On a refusal the failed update
returns the item as it was (`ReturnValuesOnConditionCheckFailure=ALL_OLD`), which tells
which limit tripped, at no extra call. If the budget refuses after the window counted the
request, one more call takes the window's increment back, so a refused request consumes
nothing. A request that could never fit (its reservation alone is above tpm or the
budget, or rpm is 0) is refused without any call.

Settling: `settle_items` returns TransactWriteItems entries that `ADD used - reserved` to
the same items. The caller puts them into the usage record's own transaction (idempotent
on the request id), so a request settles exactly once, together with its record. The
window is settled only while its minute lasts (later, it no longer limits anything).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from gateway.aws import ConditionFailed, botocore_errors
from gateway.errors import DependencyError, RateLimitError
from gateway.keys.models import ApiKey
from gateway.usage.records import key_pk

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

logger = logging.getLogger(__name__)

# How long a minute window outlives its minute before TTL may delete it.
WINDOW_TTL_SECONDS = 300

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
    ) -> None:
        self._client = client
        self._table = table
        self._clock = clock

    # -- admission ---------------------------------------------------------------------

    def admit(self, *, key: ApiKey, reserve_tokens: int) -> Admission:
        """Count the request against the key's limits and reserve its worst-case tokens.

        Raises RateLimitError (429, with Retry-After and x-ratelimit-* headers) when a
        limit refuses it (BudgetExceededError for the monthly budget); a refused request
        consumes nothing. Raises DependencyError if DynamoDB fails.
        """
        if reserve_tokens < 0:
            raise ValueError("reserve_tokens must be >= 0")
        rpm, tpm, budget = key.rpm, key.tpm, key.monthly_tokens
        if rpm is None and tpm is None and budget is None:
            return Admission(key_id=key.key_id)
        now = self._clock()
        self._refuse_impossible(key, reserve_tokens, now)
        reserved = reserve_tokens if tpm is not None or budget is not None else 0
        headers: dict[str, str] = {}
        minute: int | None = None
        if rpm is not None or tpm is not None:
            minute = int(now // 60)
            headers.update(self._take_window(key, minute, reserve_tokens, now))
        month: str | None = None
        if budget is not None:
            month = month_of(now)
            try:
                headers.update(self._take_month(key, month, reserve_tokens, now))
            except (RateLimitError, DependencyError):
                if minute is not None:
                    self._give_back_window(key, minute, reserve_tokens)
                raise
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

    def _take_window(self, key: ApiKey, minute: int, reserve: int, now: float) -> dict[str, str]:
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
            with botocore_errors("DynamoDB"):
                response = self._client.update_item(
                    TableName=self._table,
                    Key=self._key(key.key_id, window_sk(minute)),
                    UpdateExpression="ADD " + ", ".join(adds) + " SET expires_at = :exp",
                    ConditionExpression=" AND ".join(conditions),
                    ExpressionAttributeValues=values,
                    ReturnValues="UPDATED_NEW",
                    ReturnValuesOnConditionCheckFailure="ALL_OLD",
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

    def _take_month(self, key: ApiKey, month: str, reserve: int, now: float) -> dict[str, str]:
        budget = key.monthly_tokens
        assert budget is not None
        reset = _seconds_until(next_month_start(now), now)
        try:
            with botocore_errors("DynamoDB"):
                response = self._client.update_item(
                    TableName=self._table,
                    Key=self._key(key.key_id, month_sk(month)),
                    UpdateExpression="ADD tokens :reserve",
                    ConditionExpression="attribute_not_exists(tokens) OR tokens <= :room",
                    ExpressionAttributeValues={
                        ":reserve": {"N": str(reserve)},
                        ":room": {"N": str(budget - reserve)},
                    },
                    ReturnValues="UPDATED_NEW",
                    ReturnValuesOnConditionCheckFailure="ALL_OLD",
                )
        except ConditionFailed as exc:
            old = _old_item(exc)
            if old is None:
                old = self._get(key.key_id, month_sk(month))
            used = _num(old, "tokens")
            headers = self._month_headers(budget, used, reset)
            headers[RETRY_AFTER] = str(reset)
            headers[SHOULD_RETRY] = "false"
            resets_at = datetime.fromtimestamp(next_month_start(now), UTC)
            raise BudgetExceededError(
                f"Monthly token budget exhausted: limit {budget}, used {used}, "
                f"requested {reserve}. It resets at {resets_at:%Y-%m-%dT%H:%M:%SZ}.",
                headers=headers,
            ) from None
        new: dict[str, Any] = dict(response.get("Attributes", {}))
        return self._month_headers(budget, _num(new, "tokens"), reset)

    @staticmethod
    def _month_headers(budget: int, used: int, reset: int) -> dict[str, str]:
        return {
            LIMIT_TOKENS_MONTH: str(budget),
            REMAINING_TOKENS_MONTH: str(max(0, budget - used)),
            RESET_TOKENS_MONTH: duration(reset),
        }

    def _give_back_window(self, key: ApiKey, minute: int, reserve: int) -> None:
        """Undo the window's increment for a request the budget refused (best effort)."""
        adds: list[str] = []
        values: dict[str, Any] = {}
        if key.rpm is not None:
            adds.append("requests :minus_one")
            values[":minus_one"] = {"N": "-1"}
        if key.tpm is not None and reserve:
            adds.append("tokens :minus_reserve")
            values[":minus_reserve"] = {"N": str(-reserve)}
        if not adds:
            return
        try:
            with botocore_errors("DynamoDB"):
                self._client.update_item(
                    TableName=self._table,
                    Key=self._key(key.key_id, window_sk(minute)),
                    UpdateExpression="ADD " + ", ".join(adds),
                    ExpressionAttributeValues=values,
                )
        except (ConditionFailed, DependencyError):
            # The window over-counts one request until its minute ends: log, go on.
            logger.warning("rate window not compensated", extra={"key_id": key.key_id})

    # -- settling ----------------------------------------------------------------------

    def settle_items(self, admission: Admission, *, used_tokens: int) -> list[dict[str, Any]]:
        """TransactWriteItems entries that replace the reservation by the real figure.

        Add them to the usage record's transaction, so they apply exactly once. Empty
        when there is nothing to correct.
        """
        delta = used_tokens - admission.reserved_tokens
        if delta == 0:
            return []
        add = {
            "UpdateExpression": "ADD tokens :delta",
            "ExpressionAttributeValues": {":delta": {"N": str(delta)}},
        }
        items: list[dict[str, Any]] = []
        minute = admission.window_minute
        if minute is not None and int(self._clock() // 60) == minute:
            expires = {"N": str((minute + 1) * 60 + WINDOW_TTL_SECONDS)}
            items.append(
                {
                    "Update": {
                        "TableName": self._table,
                        "Key": self._key(admission.key_id, window_sk(minute)),
                        # The TTL guard keeps a window deleted meanwhile from living forever.
                        "UpdateExpression": "ADD tokens :delta "
                        "SET expires_at = if_not_exists(expires_at, :exp)",
                        "ExpressionAttributeValues": {":delta": {"N": str(delta)}, ":exp": expires},
                    }
                }
            )
        if admission.month is not None:
            items.append(
                {
                    "Update": {
                        "TableName": self._table,
                        "Key": self._key(admission.key_id, month_sk(admission.month)),
                        **add,
                    }
                }
            )
        return items

    def settle(self, admission: Admission, *, used_tokens: int) -> None:
        """Settle on its own (one call), for a request that leaves no usage record.

        Not idempotent: call it at most once per admission, and never together with
        `settle_items` in a usage record's transaction.
        """
        items = self.settle_items(admission, used_tokens=used_tokens)
        if items:
            with botocore_errors("DynamoDB"):
                self._client.transact_write_items(TransactItems=items)  # type: ignore[arg-type]

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
