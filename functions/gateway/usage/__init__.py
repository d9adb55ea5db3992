"""Usage records: one per request that reached the upstream, plus daily rollups."""

from gateway.usage.records import UsageRecord, UsageStatus
from gateway.usage.store import UsageStore

__all__ = ["UsageRecord", "UsageStatus", "UsageStore"]
