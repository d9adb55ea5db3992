"""Where a Meter's record goes: the usage table, carrying the request's reservation."""

from __future__ import annotations

from gateway.limits import Admission
from gateway.usage import UsageRecord, UsageStore


class UsageSink:
    """Writes a record (one conditional PutItem, within the usage write deadline; past
    it, UsageStore logs the whole record for the write-back). The record carries what
    admission reserved, confirmed or not (limits.AdmissionUnconfirmedError); the usage
    aggregator settles it off the request path, exactly once. Never raises."""

    def __init__(self, *, usage: UsageStore) -> None:
        self._usage = usage

    async def write(self, record: UsageRecord, *, admission: Admission | None) -> None:
        if admission is not None:
            record.reserved_tokens = admission.reserved_tokens
            record.reserved_window_minute = admission.window_minute
            record.reserved_month = admission.month
            record.reserved_unconfirmed_ms = None if admission.confirmed else admission.sent_ms
        await self._usage.record(record)
