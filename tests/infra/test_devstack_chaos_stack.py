"""The chaos run's stack (devstack.chaos.stack) must not slow the gateway it audits. During a
DynamoDB pause every usage write misses its deadline and the gateway logs the record for the
write-back; the harness writes those back as the log subscription would. The write-back
waits on the paused DynamoDB: if reading the gateway's stdout waited with it, the pipe
would fill, and the gateway's next log line would block its event loop (departures not
noticed, deadlines not kept: the full run's "held" departures, issue 27)."""

from __future__ import annotations

import asyncio

import httpx
from devstack.chaos.stack import running_stack
from gateway.usage import UsageStatus

# Enough log lines (about 1.7 KB each) to fill a 64 KB pipe several times over.
REQUESTS = 120
CONCURRENCY = 40


async def send(url: str, secret: str, model: str, count: int) -> list[int]:
    body = {
        "model": model,
        "messages": [{"role": "user", "content": "Hi"}],
        "max_tokens": 2,
        "sim": {"ttft_ms": 1, "tpot_ms": 1, "completion_tokens": 2},
    }
    headers = {"Authorization": f"Bearer {secret}"}
    limits = httpx.Limits(max_connections=CONCURRENCY)
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as client:
        gate = asyncio.Semaphore(CONCURRENCY)

        async def one() -> int:
            async with gate:
                response = await client.post("/v1/chat/completions", json=body, headers=headers)
                return response.status_code

        return await asyncio.gather(*(one() for _ in range(count)))


def test_the_gateway_answers_through_a_pause_while_its_records_wait_for_the_write_back() -> None:
    env = {"USAGE_WRITE_DEADLINE_SECONDS": "0.3", "KEY_CACHE_TTL_SECONDS": "30"}
    with running_stack(gateway_env=env) as stack:
        key_id, secret = stack.new_key("writeback")  # no limits: admission needs no call
        model = stack.models[0]
        assert asyncio.run(send(stack.gateway_url, secret, model, 1)) == [200]  # warm

        stack.faults.set(paused=True)
        try:
            statuses = asyncio.run(send(stack.gateway_url, secret, model, REQUESTS))
            # Every answer came while DynamoDB was still paused: nothing waited on it.
            assert stack.faults.state()["paused"]
        finally:
            stack.faults.set(paused=False)
        assert statuses == [200] * REQUESTS

        stack.drain()
        records = stack.usage().query(key_id=key_id)
        assert len(records) == 1 + REQUESTS
        assert all(r.status is UsageStatus.COMPLETED for r in records)
        assert stack.writebacks >= REQUESTS and stack.writeback_failures == 0
