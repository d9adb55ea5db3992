"""Per-minute limits use fixed UTC-minute windows: a test that counts requests inside one
window must not straddle the top of a minute (on a loaded machine, a few requests can take
seconds). This waits, at most ~25 s, until the rest of the current minute is long enough."""

from __future__ import annotations

import time


def start_inside_one_minute(needed_seconds: float = 25.0) -> None:
    while 60 - time.time() % 60 < needed_seconds:
        time.sleep(0.25)
