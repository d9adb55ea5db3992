"""A request that can never fit a key's limit is refused with a message that says why
(the reservation) and what to do (set max_tokens), and no Retry-After: waiting won't help."""

from __future__ import annotations

import httpx

from tests.conftest import Gateway

HI = [{"role": "user", "content": "hi"}]


def post(gateway: Gateway, key: str, **body: object) -> httpx.Response:
    return httpx.post(
        gateway.base_url + "/chat/completions",
        json={"model": "qwen3", "messages": HI, **body},
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )


def test_no_max_tokens_against_a_small_tpm_says_to_set_max_tokens(gateway: Gateway) -> None:
    key = gateway.new_key(tpm=200)
    refused = post(gateway, key)  # no max_tokens: 4096 reserved, more than 200
    assert refused.status_code == 429, refused.text
    error = refused.json()["error"]
    assert error["param"] == "max_tokens"
    assert error["code"] == "rate_limit_exceeded"
    message = error["message"]
    assert "limit 200, requested 41" in message  # prompt tokens plus 4096
    assert "DEFAULT_MAX_TOKENS" in message and "4096" in message
    assert "Set max_tokens" in message and "at most 200" in message
    assert "retry-after" not in refused.headers
    assert refused.headers["x-should-retry"] == "false"

    # Following the advice works.
    assert post(gateway, key, max_tokens=20).status_code == 200


def test_request_larger_than_the_monthly_budget_says_how_to_fit(gateway: Gateway) -> None:
    key = gateway.new_key(monthly_tokens=1000)
    refused = post(gateway, key, max_tokens=2000)
    assert refused.status_code == 429
    error = refused.json()["error"]
    assert (error["code"], error["param"]) == ("insufficient_quota", "max_tokens")
    assert "monthly token budget: limit 1000, requested 20" in error["message"]
    assert "at most 1000" in error["message"]
    assert "retry-after" not in refused.headers
    assert post(gateway, key, max_tokens=10).status_code == 200
