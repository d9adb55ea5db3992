"""Clients that drop streams at every point, under concurrency: every request still ends
in exactly one record, and the key's budget reservations are all settled.

The reproduction from the hardening issue: 200 short streams at c=32, each dropped after
1-5 events or right after the chunk that carries finish_reason (before the usage chunk
and [DONE]). Before the Meter, about half of them left no record and kept their
reservation."""

from __future__ import annotations

import asyncio
import json
import random
import time

import boto3
import httpx
import pytest

from tests.conftest import Gateway
from tests.support.usage import drain

STREAMS = 200
CONCURRENCY = 32
BODY = {
    "model": "qwen3",
    "messages": [{"role": "user", "content": "hi"}],
    "stream": True,
    "stream_options": {"include_usage": True},
    "max_tokens": 8,
    "sim": {"tpot_ms": 2},
}


async def _one(client: httpx.AsyncClient, key: str, drop_after: int | None) -> None:
    """drop_after: events to read before closing; None: close right after finish_reason."""
    headers = {"Authorization": f"Bearer {key}"}
    async with client.stream("POST", "/v1/chat/completions", json=BODY, headers=headers) as r:
        assert r.status_code == 200, (await r.aread()).decode(errors="replace")
        seen = 0
        async for line in r.aiter_lines():
            if not line.startswith("data: {"):
                continue
            seen += 1
            data = json.loads(line[6:])
            finished = any(c.get("finish_reason") for c in data.get("choices", []))
            if (drop_after is not None and seen >= drop_after) or (drop_after is None and finished):
                return  # leaving the block closes the connection


async def _run(base_url: str, key: str, plan: list[int | None]) -> None:
    limit = asyncio.Semaphore(CONCURRENCY)
    async with httpx.AsyncClient(base_url=base_url, timeout=60) as client:

        async def bounded(drop: int | None) -> None:
            async with limit:
                await _one(client, key, drop)

        await asyncio.gather(*(bounded(drop) for drop in plan))


def test_dropped_streams_each_leave_one_record_and_settle(gateway: Gateway) -> None:
    key = gateway.new_key(monthly_tokens=10_000_000)
    rng = random.Random(15)
    plan: list[int | None] = [rng.choice([1, 2, 3, 4, 5, None]) for _ in range(STREAMS)]
    asyncio.run(_run(gateway.url, key, plan))

    deadline = time.monotonic() + 30
    while len(records := gateway.records(key)) < STREAMS and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(records) == STREAMS
    assert len({r.request_id for r in records}) == STREAMS
    assert {r.status for r in records} <= {"client_disconnected", "completed"}
    billed = sum(r.total_tokens for r in records)
    drain(boto3.client("dynamodb"))  # settling is the usage aggregator's, seconds behind
    month = gateway.resources.limits.month_tokens(key_id=gateway.key_id(key))
    assert month == billed  # every reservation was settled to its record's figure


@pytest.mark.parametrize("drop_after", [1, None])
def test_single_drop_points(gateway: Gateway, drop_after: int | None) -> None:
    key = gateway.new_key(monthly_tokens=100_000)
    asyncio.run(_run(gateway.url, key, [drop_after] * 8))
    deadline = time.monotonic() + 10
    while len(records := gateway.records(key)) < 8 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(records) == 8
    assert all(r.prompt_tokens > 0 for r in records)
    drain(boto3.client("dynamodb"))  # settling is the usage aggregator's, seconds behind
    month = gateway.resources.limits.month_tokens(key_id=gateway.key_id(key))
    assert month == sum(r.total_tokens for r in records)
