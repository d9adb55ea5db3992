"""The chaos audit's records check (devstack.chaos.audit) on what a real gateway leaves when
a client leaves during a key lookup that DynamoDB does not answer: the lookup's 503 refuses
a caller not yet known, so no record is written (by design), and the client, gone before
the headers, never saw the request's id. The gateway's log line of the refusal, with its
request id, is what accounts for it (the full run's "1 missing", issue 27)."""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter
from devstack.chaos.audit import Findings, check_records, lookup_refusals, refused_503
from devstack.chaos.client import Outcome
from devstack.chaos.plan import Spec, behaviours
from devstack.dynamodb import FaultControl
from gateway.usage import UsageStore

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
    body = {"model": "qwen3", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 16}
    outcome = Outcome(spec, None, None, 0.0, sent_wall=time.time())
    with faults.paused():
        with pytest.raises(httpx.ReadTimeout):  # the client leaves before any header
            httpx.post(
                gw.url + "/v1/chat/completions",
                json=body,
                headers={"Authorization": f"Bearer {secret}"},
                timeout=LEAVE_SECONDS,
            )
        outcome.left_at = LEAVE_SECONDS
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
