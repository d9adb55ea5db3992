"""The chaos audit's records check (devstack.chaos.audit) on what a real gateway leaves when
a client leaves during a key lookup that DynamoDB does not answer: the lookup's 503 refuses
a caller not yet known, so no record is written (by design), and the client, gone before
the headers, never saw the request's id. The gateway's log line of the refusal, with its
request id, is what accounts for it (the full run's "1 missing", issue 27)."""

from __future__ import annotations

import asyncio
import io
import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter
from devstack.chaos.audit import (
    Findings,
    _nearest,
    check_records,
    lookup_refusals,
    refused_503,
)
from devstack.chaos.client import Outcome, send_one
from devstack.chaos.plan import Spec, behaviours
from devstack.dynamodb import FaultControl
from gateway.usage import UsageRecord, UsageStore

from tests.conftest import Gateway, running_gateway
from tests.support.aws import moto_dynamodb
from tests.support.usage import TABLE

LOOKUP_DEADLINE = 1.5
LEAVE_SECONDS = 0.5


@pytest.fixture(scope="module")
def stack(tokenizers_dir: Path, sim_url: str) -> Iterator[tuple[Gateway, FaultControl, Any]]:
    settings = {"key_cache_ttl_seconds": 0, "key_lookup_deadline_seconds": LOOKUP_DEADLINE}
    with moto_dynamodb() as endpoint, running_gateway(tokenizers_dir, sim_url, **settings) as gw:
        yield gw, FaultControl(endpoint), boto3.client("dynamodb")


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    """The gateway's log lines as the deployed function writes them (JSON, Powertools)."""
    lines = io.StringIO()
    handler = logging.StreamHandler(lines)
    handler.setFormatter(LambdaPowertoolsFormatter(service="gateway"))
    gateway_logger = logging.getLogger("gateway")
    level = gateway_logger.level
    gateway_logger.addHandler(handler)
    gateway_logger.setLevel(logging.INFO)
    try:
        yield lines
    finally:
        gateway_logger.removeHandler(handler)
        gateway_logger.setLevel(level)


def test_a_client_gone_before_a_key_lookup_503_is_accounted_for(
    stack: tuple[Gateway, FaultControl, Any], log_lines: io.StringIO
) -> None:
    gw, faults, client = stack
    secret = gw.new_key()
    key_id = gw.key_id(secret)
    left = next(b for b in behaviours(20_000) if b.name == "left_buffered")
    spec = Spec(0, "k", "qwen3", "chat", left, 16, LEAVE_SECONDS)

    async def leave_early() -> Outcome:  # as the run's clients do: gone after LEAVE_SECONDS
        async with httpx.AsyncClient(base_url=gw.url) as http:
            return await send_one(http, spec, secret)

    with faults.paused():
        outcome = asyncio.run(leave_early())
        assert outcome.left_at is not None and outcome.request_id is None and outcome.sent
        deadline = time.monotonic() + 30
        while not refused_503(log_lines.getvalue().splitlines()):  # the lookup's deadline
            assert time.monotonic() < deadline, log_lines.getvalue()
            time.sleep(0.1)

    records = {"k": UsageStore(client=client, table=TABLE, retention_days=30).query(key_id=key_id)}
    assert records == {"k": []}  # refused before the caller was known: no record
    refused = refused_503(log_lines.getvalue().splitlines())
    findings = Findings()
    check_records(findings, [outcome], records, lookup_503s=lookup_refusals(records, refused))
    [check] = findings.checks
    assert check.ok, check.detail
    assert "503 at the key lookup, its client gone before the answer: 1" in findings.notes[0]


def test_requests_without_a_record_do_not_shift_the_later_pairs() -> None:
    """Four early leavers of one key and route, the second refused at the key lookup (no
    record): each record is paired with the request sent just before it began."""
    left = next(b for b in behaviours(20_000) if b.name == "left_buffered")
    sent = [
        Outcome(Spec(i, "k", "qwen3", "chat", left, 16, 1.0), None, None, 1.0, sent_wall=t)
        for i, t in enumerate((100.0, 101.0, 102.0, 103.0))
    ]
    got = [
        UsageRecord(
            request_id=f"r{t}",
            key_id="key_k",
            model="qwen3",
            endpoint="-",
            stream=False,
            created_at=datetime.fromtimestamp(t + 1.0, UTC),
            latency_ms=1000.0,
        )
        for t in (100.1, 102.1, 103.1)
    ]
    pairs = _nearest(sent, got)
    assert {i: r.request_id for i, r in pairs.items()} == {0: "r100.1", 2: "r102.1", 3: "r103.1"}
