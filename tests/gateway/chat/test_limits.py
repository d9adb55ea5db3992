"""Per-key limits through the gateway: 429 with OpenAI's headers, a usage record for
every refusal, x-ratelimit-* on successes, and reservations settled to the real figure."""

from __future__ import annotations

from pathlib import Path

import boto3
import httpx

from tests.conftest import Gateway
from tests.support.minute import within_one_minute
from tests.support.schemas import validate
from tests.support.usage import drain

HI = [{"role": "user", "content": "hi"}]
RATE_HEADERS = (
    "x-ratelimit-limit-requests",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-reset-requests",
)


def post(gateway: Gateway, key: str, **body: object) -> httpx.Response:
    return httpx.post(
        gateway.base_url + "/chat/completions",
        json={"model": "qwen3", "messages": HI, "max_tokens": 4, **body},
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )


def test_rpm_limit_refuses_with_headers_and_records(
    gateway: Gateway, conformance_schemas: Path
) -> None:

    def burst() -> tuple[str, list[httpx.Response]]:  # one minute window for the three
        key = gateway.new_key(rpm=2)
        return key, [post(gateway, key) for _ in range(3)]

    key, (first, second, third) = within_one_minute(burst)
    assert first.status_code == second.status_code == 200
    assert first.headers["x-ratelimit-limit-requests"] == "2"
    assert first.headers["x-ratelimit-remaining-requests"] == "1"
    assert second.headers["x-ratelimit-remaining-requests"] == "0"
    assert third.status_code == 429, third.text
    validate(conformance_schemas, "ErrorResponse", third.json())
    assert third.json()["error"]["type"] == "rate_limit_error"
    assert 1 <= int(third.headers["retry-after"]) <= 60
    for name in RATE_HEADERS:
        assert name in third.headers
    records = gateway.records(key)
    assert [r.status for r in records] == ["completed", "completed", "rate_limited"]
    refused = records[-1]
    assert refused.total_tokens == 0 and refused.http_status == 429
    assert refused.request_id == third.headers["x-request-id"]


def test_streamed_response_carries_rate_headers(gateway: Gateway) -> None:
    key = gateway.new_key(rpm=5, tpm=10_000)
    with gateway.stream_chat(
        key, {"model": "qwen3", "messages": HI, "stream": True, "max_tokens": 3}
    ) as response:
        assert response.status_code == 200
        assert response.headers["x-ratelimit-remaining-requests"] == "4"
        assert int(response.headers["x-ratelimit-remaining-tokens"]) < 10_000
        response.read()


def test_monthly_budget_reserves_then_settles_to_real_usage(gateway: Gateway) -> None:
    key = gateway.new_key(monthly_tokens=200)
    key_id = gateway.key_id(key)
    ok = post(gateway, key, max_tokens=5)
    assert ok.status_code == 200
    used = ok.json()["usage"]["total_tokens"]
    # the reservation (prompt + 5) was replaced by the real figure (by the aggregator)
    drain(boto3.client("dynamodb"))
    assert gateway.resources.limits.month_tokens(key_id=key_id) == used

    prompt = ok.json()["usage"]["prompt_tokens"]
    # worst case within the budget, but more than what is left of it this month
    too_big = post(gateway, key, max_tokens=200 - prompt)
    assert too_big.status_code == 429
    assert too_big.json()["error"]["code"] == "insufficient_quota"
    assert int(too_big.headers["retry-after"]) > 0
    assert gateway.resources.limits.month_tokens(key_id=key_id) == used
    assert [r.status for r in gateway.records(key)] == ["completed", "rate_limited"]

    impossible = post(gateway, key, max_tokens=500)  # can never fit this budget
    assert impossible.status_code == 429
    assert "budget" in impossible.json()["error"]["message"]


def test_request_without_max_tokens_gets_the_reserved_cap(gateway: Gateway) -> None:
    key = gateway.new_key(tpm=100_000)
    response = post(gateway, key, max_tokens=None, sim={"completion_tokens": 10})
    assert response.status_code == 200
    assert response.json()["usage"]["completion_tokens"] == 10


def test_unlimited_keys_get_no_rate_headers(gateway: Gateway) -> None:
    response = post(gateway, gateway.new_key())
    assert response.status_code == 200
    assert not any(h.startswith("x-ratelimit") for h in response.headers)
