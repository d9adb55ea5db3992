"""Read a server-sent-event stream as raw events, with their arrival times."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx


def events(response: httpx.Response) -> Iterator[tuple[float, Any]]:
    """(arrival time, parsed JSON or the string "[DONE]") for each `data:` event."""
    for line in response.iter_lines():
        if not line.startswith("data: "):
            continue
        data = line[6:]
        yield time.monotonic(), ("[DONE]" if data == "[DONE]" else json.loads(data))
