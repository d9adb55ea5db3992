"""Usage records for tests: one set of defaults, each test overriding what it is about."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from gateway.usage import UsageRecord


def usage_record(**overrides: Any) -> UsageRecord:
    values: dict[str, Any] = {
        "request_id": uuid.uuid4().hex,
        "key_id": "key_a",
        "model": "qwen3",
        "endpoint": "http://gpu",
        "created_at": datetime(2026, 11, 22, 10, tzinfo=UTC),
        "stream": False,
        "prompt_tokens": 10,
        "completion_tokens": 5,
    }
    values.update(overrides)
    return UsageRecord(**values)
