"""Request counters exposed at /sim/stats."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Stats:
    """``requests``: chat requests received; ``completed``: generations that ran to their end;
    ``cancelled``: generations stopped because the client disconnected; ``active``:
    generations in progress (a gauge: reset leaves it alone)."""

    requests: int = 0
    completed: int = 0
    cancelled: int = 0
    active: int = 0

    def snapshot(self) -> dict[str, int]:
        return {
            "requests": self.requests,
            "completed": self.completed,
            "cancelled": self.cancelled,
            "active": self.active,
        }

    def reset(self) -> None:
        self.requests = self.completed = self.cancelled = 0
