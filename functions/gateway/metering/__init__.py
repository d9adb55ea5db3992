"""Per-request accounting: admission, observed output, the one usage record."""

from gateway.metering.generated import Generated, count_all
from gateway.metering.meter import Meter, RecordSink
from gateway.metering.sink import UsageSink
from gateway.metering.status import status_for

__all__ = ["Generated", "Meter", "RecordSink", "UsageSink", "count_all", "status_for"]
