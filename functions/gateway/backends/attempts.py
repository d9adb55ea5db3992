"""Which endpoint served a call, and in how many attempts: for its usage record.

A `RouteTrace` is created by whoever makes the call (the pipeline for the model's call,
the guard for each of its own) and handed to `RoutedBackend.complete` / `open_stream`,
which fills it in. Nothing travels implicitly: two calls of one request (the model's and
the guard's) have two traces, and each lands in its own fields of the record.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class RouteTrace:
    # The endpoint that served the call (or the last one tried, if none did).
    endpoint: str | None = None
    # Attempts made across the model's endpoints and fallbacks (0: none was routed).
    attempts: int = 0
    failovers: int = 0
