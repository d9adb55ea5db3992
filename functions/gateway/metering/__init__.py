"""Per-request accounting: admission, observed output, the one usage record."""

from gateway.metering.meter import Meter, RecordSink, status_for
from gateway.metering.sink import UsageSink

__all__ = ["Meter", "RecordSink", "UsageSink", "status_for"]
