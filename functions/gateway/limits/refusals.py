"""What admission tells the client: the x-ratelimit-* headers of an admitted request, and
the 429 of a refused one (which limit, what was used, when it resets, whether to retry)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from gateway.errors import DependencyError, RateLimitError
from gateway.keys.apikey import ApiKey
from gateway.layout import number
from gateway.limits.admission import Admission
from gateway.limits.items import (
    FENCE,
    next_month_start,
    until_next_minute,
    until_next_month,
    window_attributes,
)

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


def duration(seconds: int) -> str:
    """OpenAI's reset format: "12s", "6m0s", "3h2m1s"."""
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes}m{seconds}s"


def window_headers(key: ApiKey, *, requests: int, tokens: int, reset: int) -> dict[str, str]:
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


def month_headers(budget: int, used: int, reset: int) -> dict[str, str]:
    return {
        LIMIT_TOKENS_MONTH: str(budget),
        REMAINING_TOKENS_MONTH: str(max(0, budget - used)),
        RESET_TOKENS_MONTH: duration(reset),
    }


def _advice(limit: int) -> str:
    return (
        "The gateway reserves a request's worst case before sending it: its prompt "
        "tokens plus max_tokens for each choice (n); a request without max_tokens or "
        "max_completion_tokens reserves the gateway's default (DEFAULT_MAX_TOKENS, "
        "4096 unless configured). Set max_tokens so that the prompt plus "
        f"n * max_tokens is at most {limit}, or shorten the prompt. Waiting will not help."
    )


def refuse_impossible(key: ApiKey, reserve: int) -> None:
    """Refuse, without a call, a request that no amount of waiting would admit: a 429
    (OpenAI's answer to a request above a limit) with `x-should-retry: false` and no
    Retry-After, whose message names the reservation and how to make it fit."""
    headers = {SHOULD_RETRY: "false"}
    if key.rpm is not None and key.rpm < 1:
        raise RateLimitError(
            "This API key allows no requests (rpm is 0): ask its owner to raise its rpm.",
            headers=headers,
        )
    too_large = (
        (key.tpm, "tokens per minute (TPM)", RateLimitError, LIMIT_TOKENS),
        (key.monthly_tokens, "the monthly token budget", BudgetExceededError, LIMIT_TOKENS_MONTH),
    )
    for limit, what, error, header in too_large:
        if limit is not None and reserve > limit:
            raise error(
                f"Request too large for {what}: limit {limit}, requested {reserve}. "
                f"{_advice(limit)}",
                param="max_tokens",
                headers={**headers, header: str(limit)},
            )


def window_refusal(
    key: ApiKey, reserve: int, old: dict[str, Any] | None, reset: int
) -> RateLimitError:
    """The 429 of a full minute window (`old`: the window item as the condition saw it)."""
    requests, tokens = number(old, "requests"), number(old, "tokens")
    reasons: list[str] = []
    if key.rpm is not None and requests >= key.rpm:
        reasons.append(f"requests per minute (RPM): limit {key.rpm}, used {requests}")
    if key.tpm is not None and tokens + reserve > key.tpm:
        reasons.append(
            f"tokens per minute (TPM): limit {key.tpm}, used {tokens}, requested {reserve}"
        )
    if not reasons:  # the counters moved (settled) since the condition failed
        reasons.append("requests per minute" if key.tpm is None else "tokens per minute")
    headers = window_headers(key, requests=requests, tokens=tokens, reset=reset)
    headers[RETRY_AFTER] = str(reset)
    return RateLimitError(
        f"Rate limit reached for {'; '.join(reasons)}. Please try again in {reset}s.",
        headers=headers,
    )


def month_refusal(
    key: ApiKey, minute: int | None, reserve: int, old: dict[str, Any] | None, now: float
) -> RateLimitError:
    """Which limit refused: the window's (a 429 to retry soon), else the budget's."""
    budget = key.monthly_tokens
    assert budget is not None
    if minute is not None:
        requests, tokens = (number(old, a) for a in window_attributes(minute))
        over_rpm = key.rpm is not None and requests >= key.rpm
        over_tpm = key.tpm is not None and tokens + reserve > key.tpm
        if over_rpm or over_tpm:
            window = {"requests": {"N": str(requests)}, "tokens": {"N": str(tokens)}}
            return window_refusal(key, reserve, window, until_next_minute(minute, now))
    reset = until_next_month(now)
    used = number(old, "tokens")
    headers = month_headers(budget, used, reset)
    headers[RETRY_AFTER] = str(reset)
    headers[SHOULD_RETRY] = "false"
    resets_at = datetime.fromtimestamp(next_month_start(now), UTC)
    return BudgetExceededError(
        f"Monthly token budget exhausted: limit {budget}, used {used}, "
        f"requested {reserve}. It resets at {resets_at:%Y-%m-%dT%H:%M:%SZ}.",
        headers=headers,
    )


def landed_before(
    key: ApiKey, planned: Admission, minute: int | None, old: dict[str, Any] | None, now: float
) -> dict[str, Any]:
    """A budget's admission whose condition failed: the item (`old`) if an earlier attempt
    of this admission had landed (its marker is there: it counts once). Else raises the
    refusal: DependencyError if the aggregator's fence bars it (it came too late: its
    client has had a 503), or the limit's 429 (month_refusal)."""
    if planned.marker is not None and old is not None and planned.marker in old:
        return old
    if planned.sent_ms is not None and number(old, FENCE) >= planned.sent_ms:
        raise DependencyError("DynamoDB took this admission after its settlement (rate limits)")
    raise month_refusal(key, minute, planned.reserved_tokens, old, now)
