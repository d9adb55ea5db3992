"""An upstream's Retry-After header, in seconds from now."""

from __future__ import annotations

from email.utils import parsedate_to_datetime

# A wait longer than this is not one a request should sit through, whatever the budget.
MAX_WAIT_SECONDS = 3600.0


def retry_after_seconds(value: str | None, *, now: float) -> float | None:
    """Seconds to wait: delta-seconds or an HTTP-date (RFC 9110 10.2.3); None if absent
    or unreadable."""
    if not value:
        return None
    text = value.strip()
    if text.isdigit():
        return min(float(text), MAX_WAIT_SECONDS)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return min(max(when.timestamp() - now, 0.0), MAX_WAIT_SECONDS)
