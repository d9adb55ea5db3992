"""The limits' items in the usage table (what they hold: limits/store.py's docstring; their
keys: layout.py): window attribute names, the UTC minute and month they stand for."""

from __future__ import annotations

import base64
import hashlib
import math
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from gateway import layout
from gateway.aws import ConditionFailed

# How long a minute window outlives its minute before TTL may delete it.
WINDOW_TTL_SECONDS = 300
# Window attributes on a month item: each admission removes this many earlier minutes'.
STALE_MINUTES = 5
# A month item's admission markers: one attribute per admission not yet known to be
# settled, named MARKER_PREFIX + 12 characters (limits/store.py's docstring).
MARKER_PREFIX = "m"
# The month item's fence (epoch ms): an admission sent at or before it may no longer land.
FENCE = "fence"


def window_attributes(minute: int) -> tuple[str, str]:
    """The (requests, tokens) attribute names of a minute window on a month item."""
    return f"w{minute}r", f"w{minute}t"


def marker_attribute(request_id: str) -> str:
    """The month item's attribute that marks this request's admission: 72 bits of its
    id's BLAKE2b digest (13 characters on the item, whatever the id's length)."""
    digest = hashlib.blake2b(request_id.encode(), digest_size=9).digest()
    return MARKER_PREFIX + base64.urlsafe_b64encode(digest).decode()


def item_key(key_id: str, sk: str) -> dict[str, Any]:
    return layout.item_key(layout.key_pk(key_id), sk)


def month_of(now: float) -> str:
    return datetime.fromtimestamp(now, UTC).strftime("%Y-%m")


def next_month_start(now: float) -> float:
    dt = datetime.fromtimestamp(now, UTC)
    year, month = (dt.year + 1, 1) if dt.month == 12 else (dt.year, dt.month + 1)
    return datetime(year, month, 1, tzinfo=UTC).timestamp()


def seconds_until(moment: float, now: float) -> int:
    return max(1, math.ceil(moment - now))


def until_next_minute(minute: int, now: float) -> int:
    return seconds_until((minute + 1) * 60, now)


def until_next_month(now: float) -> int:
    return seconds_until(next_month_start(now), now)


def old_item(exc: ConditionFailed) -> dict[str, Any] | None:
    """The item as the failed condition saw it (ReturnValuesOnConditionCheckFailure)."""
    cause = exc.__cause__
    if isinstance(cause, ClientError):
        response: dict[str, Any] = dict(cause.response)
        item = response.get("Item")
        if isinstance(item, dict):
            return item
    return None
