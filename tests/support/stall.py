"""How long this thread is held up while a call runs in another (GIL or event loop)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def longest_stall(call: Callable[[], T], probe: Callable[[], object]) -> tuple[T, float, float]:
    """Runs `call` in a worker thread and `probe` over and over in this one until the call
    returns: (its result, its time, the longest time from the start or one probe's return
    to the next), in seconds. A call that holds the GIL, or holds back what `probe` waits
    for, shows as one long stall."""
    result: list[T] = []
    worker = threading.Thread(target=lambda: result.append(call()))
    started = last = time.perf_counter()
    longest = 0.0
    worker.start()
    while worker.is_alive():
        probe()
        now = time.perf_counter()
        longest, last = max(longest, now - last), now
    worker.join()
    if not result:
        raise AssertionError("the call raised (its traceback is above)")
    return result[0], time.perf_counter() - started, longest
