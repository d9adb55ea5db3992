"""The Responses and Messages routes share chat's limits and budgets (one key, one window,
one budget across every route), and their usage shows in `GET /v1/usage` by route."""

from __future__ import annotations

from datetime import UTC, datetime

import anthropic
import boto3
import httpx
import openai

from tests.conftest import Gateway
from tests.hardening.audit import month_counter
from tests.support.minute import within_one_minute
from tests.support.sdk import anthropic_client, openai_client
from tests.support.usage import drain

HI = [{"role": "user", "content": "hi"}]


def test_one_rate_limit_across_chat_responses_and_messages(gateway: Gateway) -> None:
    def burst() -> tuple[str, list[bool]]:
        key = gateway.new_key(rpm=3)
        oa = openai_client(base_url=gateway.base_url, api_key=key, max_retries=0, timeout=30)
        an = anthropic_client(base_url=gateway.url, api_key=key, max_retries=0, timeout=30)
        calls = [
            lambda: oa.chat.completions.create(model="qwen3", messages=HI, max_tokens=2),  # type: ignore[arg-type]
            lambda: oa.responses.create(model="qwen3", input="hi", max_output_tokens=2),
            lambda: an.messages.create(model="qwen3", messages=HI, max_tokens=2),  # type: ignore[arg-type]
        ]
        admitted = []
        for call in calls * 2:
            try:
                call()
                admitted.append(True)
            except (openai.RateLimitError, anthropic.RateLimitError) as refused:
                assert refused.status_code == 429
                admitted.append(False)
        return key, admitted

    key, admitted = within_one_minute(burst)
    assert admitted == [True] * 3 + [False] * 3  # the 4th to 6th, whatever their route
    # Every request has its record, the refused ones too.
    routes = sorted(r.route for r in gateway.records(key))
    assert routes == sorted(["chat", "responses", "messages"] * 2)


def test_one_budget_and_usage_by_route(gateway: Gateway) -> None:
    key = gateway.new_key(monthly_tokens=10_000)
    oa = openai_client(base_url=gateway.base_url, api_key=key, max_retries=0, timeout=30)
    an = anthropic_client(base_url=gateway.url, api_key=key, max_retries=0, timeout=30)
    oa.chat.completions.create(model="qwen3", messages=HI, max_tokens=3)  # type: ignore[arg-type]
    oa.responses.create(model="qwen3", input="hi", max_output_tokens=3, store=False)
    an.messages.create(model="qwen3", messages=HI, max_tokens=3)  # type: ignore[arg-type]
    drain(boto3.client("dynamodb"))
    today = datetime.now(UTC).strftime("%Y-%m-%d")
    usage = httpx.get(
        f"{gateway.base_url}/usage",
        params={"start": today, "end": today, "group_by": "route"},
        headers={"x-api-key": key},
        timeout=10,
    ).json()
    assert {row["route"] for row in usage["data"]} >= {"chat", "responses", "messages"}
    # One monthly budget: its counter holds every route's billed tokens, settled.
    month = datetime.now(UTC).strftime("%Y-%m")
    billed = sum(r.total_tokens for r in gateway.records(key))
    assert month_counter(gateway, gateway.key_id(key), month) == billed
