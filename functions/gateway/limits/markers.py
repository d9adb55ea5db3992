"""An instance's markers of confirmed admissions, for its next admission on the same month
item to remove in passing (limits/updates.month_update): a marker is needed only while
the admission's outcome is unknown, and every marker on the item costs write units on
each admission (DynamoDB charges an update by the item's size)."""

from __future__ import annotations

import threading
from collections import OrderedDict

# Markers removed in passing by one admission, at most; the rest wait for the next one
# (or for the aggregator, which removes them with the settlement).
PER_ADMISSION = 16
# Month items whose markers an instance remembers, at most (the oldest forgotten: the
# aggregator removes them anyway).
ITEMS_KEPT = 1024

Item = tuple[str, str]  # (key_id, "YYYY-MM")


class SettledMarkers:
    """Thread-safe: admissions run in worker threads."""

    def __init__(self) -> None:
        self._markers: OrderedDict[Item, list[str]] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, item: Item, markers: list[str]) -> None:
        """Markers of admissions known to have landed (or whose removal may not have)."""
        if not markers:
            return
        with self._lock:
            self._markers.setdefault(item, []).extend(markers)
            self._markers.move_to_end(item)
            while len(self._markers) > ITEMS_KEPT:
                self._markers.popitem(last=False)

    def take(self, item: Item) -> list[str]:
        """Up to PER_ADMISSION markers of `item`, no longer held here: give them back
        (add) if the admission that carries their removal fails."""
        with self._lock:
            markers = self._markers.get(item, [])
            taken = markers[:PER_ADMISSION]
            del markers[:PER_ADMISSION]
            if not markers:
                self._markers.pop(item, None)
        return taken
