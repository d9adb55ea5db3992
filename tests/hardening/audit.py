"""What every hardening case must satisfy, checked per response and per key at the end.

Per response (`Audit.check`):
- never a 422 (FastAPI's own validation format must not leak out);
- no 5xx other than 502/503/504, and those only for a case that injected an upstream fault;
- every error, and every error event ending a stream, in OpenAI's format (validated
  against OpenAI's own ErrorResponse schema; `response.failed` against the Responses
  API's), or on the Messages routes in Anthropic's (its published ErrorResponse);
- neither the API key's secret nor the upstream's error text anywhere in the response.

Per key, after the cases (`Audit.settle`):
- exactly one usage record per authenticated chat request, matched by request id;
- the key's monthly budget counter, once the usage aggregator has drained the stream,
  equals the sum of its records' tokens (every reservation settled to the real figure,
  exactly once, none left behind).
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
from gateway.limits.store import month_sk

from tests.conformance import validate_anthropic_error, validate_response_event
from tests.conftest import Gateway
from tests.support.schemas import validate
from tests.support.usage import drain

RECORD_WAIT_SECONDS = 10.0

# Large enough that no generated request is refused for budget, so every case is admitted
# and its reservation must be settled.
BUDGET = 10**12
UPSTREAM_FAULT_STATUSES = frozenset({502, 503, 504})
# The simulated endpoint's own error texts ("Simulated failure (HTTP 500).", "Simulated
# upstream failure after 2 tokens."): upstream words that must never reach a client.
UPSTREAM_TEXT = b"Simulated"


@dataclass
class Audit:
    gateway: Gateway
    schemas: Path
    secret: str
    chat_request_ids: list[str] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    cases: int = 0
    stream_errors: int = 0  # streams that ended with an error event
    sent: dict[str, str] = field(default_factory=dict)  # request id -> what was sent
    # Requests with stop strings: vLLM counts the ids through the token that completed the
    # stop string, whose text past the stop it cuts; re-tokenizing text + stop can differ
    # by a token (docs/TOKENS.md), so only their prompt counts must match.
    approximate_completion: set[str] = field(default_factory=set)

    @classmethod
    def fresh(cls, gateway: Gateway, schemas: Path, **limits: int) -> Audit:
        """An audit on a new key that has a monthly budget (so it reserves and settles)."""
        limits.setdefault("monthly_tokens", BUDGET)
        return cls(gateway, schemas, gateway.new_key(**limits))

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.secret}"}

    def check(
        self,
        *,
        status: int,
        body: bytes,
        content_type: str,
        request_id: str | None,
        chat: bool,
        fault: bool = False,
        stop_strings: bool = False,
        anthropic: bool = False,
        what: str = "",
    ) -> None:
        """One response. `chat`: an authenticated metered request (it must leave a
        record); `fault`: the case asked the simulated upstream to fail; `anthropic`: a
        Messages route, whose errors are in Anthropic's shape."""
        self.cases += 1
        self.statuses[status] += 1
        context = f"{what} -> {status}: {body[:300]!r}"
        assert status != 422, context
        if status >= 500:
            assert status in UPSTREAM_FAULT_STATUSES and fault, context
        assert self.secret.encode() not in body, context
        assert UPSTREAM_TEXT not in body, context
        if chat:
            assert request_id, context
            self.chat_request_ids.append(request_id)
            self.sent[request_id] = what
            if stop_strings:
                self.approximate_completion.add(request_id)
        if status >= 400:
            assert content_type.startswith("application/json"), context
            if anthropic:
                validate_anthropic_error(json.loads(body))
            else:
                validate(self.schemas, "ErrorResponse", json.loads(body))
        elif content_type.startswith("text/event-stream"):
            for event in sse_events(body):
                if not isinstance(event, dict):
                    continue
                if anthropic and event.get("type") == "error":
                    validate_anthropic_error(event)
                    self.stream_errors += 1
                elif event.get("type") == "response.failed":  # the Responses API's
                    validate_response_event("response.failed", event)
                    self.stream_errors += 1
                elif "error" in event:
                    validate(self.schemas, "ErrorResponse", event)
                    self.stream_errors += 1

    def settle(self) -> dict[str, Any]:
        """Records and the budget counter for this key; returns the figures."""
        expected = Counter(self.chat_request_ids)
        # A client that stopped reading a stream (the test client gives up on long ones)
        # has moved on before the gateway notices it left and writes that record: records
        # still missing are waited for, a little; one that never comes still fails below.
        give_up = time.monotonic() + RECORD_WAIT_SECONDS
        while True:
            records = self.gateway.records(self.secret)
            found = Counter(r.request_id for r in records)
            if not expected - found or time.monotonic() > give_up:
                break
            time.sleep(0.2)
        assert found == expected, {
            "missing": sorted((expected - found).elements()),
            "extra": sorted((found - expected).elements()),
        }
        key_id = self.gateway.key_id(self.secret)
        # Reservations are settled by the usage aggregator from the table's stream: run it
        # over everything written so far, as its Lambda event source would.
        drain(boto3.client("dynamodb"))
        month = datetime.now(UTC).strftime("%Y-%m")
        counter = month_counter(self.gateway, key_id, month)
        billed = sum(r.total_tokens for r in records)
        # The simulated endpoint counts as vLLM does, so the gateway's own count of every
        # completed request is the upstream's, to the token.
        mismatched = [
            (
                r.request_id,
                r.gateway_prompt_tokens,
                r.upstream_prompt_tokens,
                r.gateway_completion_tokens,
                r.upstream_completion_tokens,
            )
            for r in records
            if r.status == "completed"
            and r.upstream_prompt_tokens is not None
            and (
                r.gateway_prompt_tokens != r.upstream_prompt_tokens
                or (
                    r.request_id not in self.approximate_completion
                    and r.gateway_completion_tokens != r.upstream_completion_tokens
                )
            )
        ]
        assert not mismatched, [(m, self.sent.get(m[0])) for m in mismatched]
        assert counter == billed, f"{month_sk(month)}: {counter} != sum of records {billed}"
        return {
            "cases": self.cases,
            "5xx": sum(n for s, n in self.statuses.items() if s >= 500),
            "records_expected": sum(expected.values()),
            "records_found": len(records),
            "tokens": billed,
            "stream_errors": self.stream_errors,
            "statuses": dict(sorted(self.statuses.items())),
        }


def month_counter(gateway: Gateway, key_id: str, month: str) -> int:
    """The `month#YYYY-MM` item's tokens (0 when no request reserved any)."""
    limits = gateway.resources.limits
    assert limits is not None
    item = limits._get(key_id, month_sk(month))
    return int(item["tokens"]["N"]) if item and "tokens" in item else 0


def sse_events(body: bytes) -> list[Any]:
    events: list[Any] = []
    for block in body.split(b"\n\n"):
        for line in block.split(b"\n"):
            if line.startswith(b"data:"):
                data = line[5:].strip()
                if data and data != b"[DONE]":
                    events.append(json.loads(data))
    return events


def assert_no_secret_logged(secret: str, records: list[logging.LogRecord], *texts: str) -> None:
    """The secret in no log record (message, extra fields, traceback) nor captured output."""
    for record in records:
        rendered = " ".join(
            [record.getMessage(), repr(record.__dict__), str(record.exc_text or "")]
        )
        assert secret not in rendered, f"secret logged by {record.name}: {record.getMessage()}"
    for text in texts:
        assert secret not in text, "secret in captured output"
