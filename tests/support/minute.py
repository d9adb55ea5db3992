"""Per-minute limits use fixed UTC-minute windows (limits/store.py): a burst of requests
that straddles the top of a minute is rightly admitted twice, so a test that counts
refusals inside one window must run inside one minute. Rather than sleeping until a
minute begins, `within_one_minute` runs the burst and runs it again, from fresh keys, in
the rare case that it started and ended in different minutes. The gateway under test runs
in this process (tests/conftest.py), so both read the same clock."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def within_one_minute(
    attempt: Callable[[], T], *, tries: int = 3, clock: Callable[[], float] = time.time
) -> T:
    """The result of the first run of `attempt` that started and ended in one UTC minute.
    `attempt` must start from fresh keys: a straddling run's refusals are not reused."""
    for _ in range(tries):
        minute = clock() // 60
        result = attempt()
        if clock() // 60 == minute:
            return result
    raise AssertionError(f"{tries} runs in a row straddled a minute: is the burst over a minute?")
