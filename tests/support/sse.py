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


def is_content(data: Any) -> bool:
    """A chunk that carries generated text (not the role, finish, usage or [DONE])."""
    return (
        data != "[DONE]"
        and bool(data.get("choices"))
        and bool(data["choices"][0]["delta"].get("content"))
    )


def assert_incremental(
    received: list[tuple[float, Any]], *, started: float, tokens: int, tpot_ms: float
) -> None:
    """Content chunks spread over the generation, as produced, instead of arriving in one
    burst at the end (generous margins: these machines are shared and noisy)."""
    arrivals = [t for t, data in received if is_content(data)]
    assert len(arrivals) >= tokens - 2
    first, last = arrivals[0] - started, arrivals[-1] - started
    generation = tokens * tpot_ms / 1000
    # Buffered to the end, the first chunk would arrive with the last.
    assert last >= 0.8 * generation
    assert first < last - 0.5 * generation
    assert arrivals[len(arrivals) // 2] - arrivals[0] > 0.3 * generation
