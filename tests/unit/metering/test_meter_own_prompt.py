"""A Meter that bills its own prompt count (a request forwarded to an upstream in the
Responses or Messages API, which renders the conversation its own way)."""

from __future__ import annotations

import asyncio

import pytest
from gateway.usage import UsageStatus

from tests.unit.fakes import RecordingSink, chunk
from tests.unit.metering.test_meter import meter

pytestmark = pytest.mark.anyio
USAGE = {"prompt_tokens": 14, "completion_tokens": 4, "prompt_tokens_details": {"cached_tokens": 3}}


async def test_own_prompt_bills_the_gateway_count_and_the_upstreams_completion() -> None:
    m = meter(RecordingSink(), forwarded=True, own_prompt=True)
    m.observe_chunk(chunk("one two"))
    m.observe_chunk(chunk(finish="stop", usage=USAGE))
    record = await m.close(UsageStatus.COMPLETED)
    assert (record.prompt_tokens, record.completion_tokens) == (10, 4)
    # The upstream's own figures stay on the record beside the gateway's.
    assert (record.upstream_prompt_tokens, record.gateway_prompt_tokens) == (14, 10)
    assert record.cached_tokens == 3


async def test_own_prompt_waits_for_a_deferred_count_it_bills() -> None:
    m = meter(RecordingSink(), forwarded=True, own_prompt=True, audit=False)

    async def count() -> None:
        await asyncio.sleep(0)
        m.prompt_tokens = 12

    m.prompt_tokens, m.prompt_counted = 40, False  # the bound, until the count has run
    m.deferred = asyncio.create_task(count())
    m.observe_chunk(chunk(finish="stop", usage=USAGE))
    record = await m.close(UsageStatus.COMPLETED)
    assert record.prompt_tokens == 12 and record.completion_tokens == 4


async def test_without_own_prompt_the_upstreams_prompt_is_billed() -> None:
    m = meter(RecordingSink(), forwarded=True)
    m.observe_chunk(chunk(finish="stop", usage=USAGE))
    record = await m.close(UsageStatus.COMPLETED)
    assert record.prompt_tokens == 14
