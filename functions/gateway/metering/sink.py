"""Where a Meter's record goes: the usage table, settling the request's reservation."""

from __future__ import annotations

from typing import Any

import anyio.to_thread

from gateway.limits import Admission, LimitStore
from gateway.usage import UsageRecord, UsageStore


class UsageSink:
    """Writes a record and settles its admission in one idempotent transaction; if
    DynamoDB keeps failing, UsageStore logs the whole record for replay. Never raises."""

    def __init__(self, *, usage: UsageStore, limits: LimitStore | None) -> None:
        self._usage = usage
        self._limits = limits

    async def write(self, record: UsageRecord, *, admission: Admission | None) -> None:
        extra: list[dict[str, Any]] = []
        if self._limits is not None and admission is not None:
            extra = self._limits.settle_items(admission, used_tokens=record.total_tokens)
        await anyio.to_thread.run_sync(lambda: self._usage.record(record, extra_items=extra))
