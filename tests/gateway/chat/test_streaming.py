"""Streaming is incremental: chunks reach the client as the upstream produces them."""

from __future__ import annotations

import time

import httpx

from tests.conftest import Gateway
from tests.support.sse import events


def test_first_chunk_arrives_long_before_the_last_is_generated(gateway: Gateway) -> None:
    key = gateway.new_key()
    tokens, tpot = 20, 50  # the simulated endpoint spends 20 x 50 ms generating
    body = {
        "model": "qwen3",
        "messages": [{"role": "user", "content": "Tell me a story."}],
        "stream": True,
        "max_tokens": tokens,
        "sim": {"tpot_ms": tpot, "ttft_ms": 0},
    }
    started = time.monotonic()
    with httpx.stream(
        "POST",
        gateway.base_url + "/chat/completions",
        json=body,
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    ) as response:
        arrivals = [
            t
            for t, data in events(response)
            if data != "[DONE]" and data["choices"] and data["choices"][0]["delta"].get("content")
        ]
    assert len(arrivals) >= tokens - 2
    first, last = arrivals[0] - started, arrivals[-1] - started
    generation = tokens * tpot / 1000
    # Buffered to the end, the first chunk would arrive with the last (~1 s in).
    assert last >= 0.8 * generation
    assert first < last - 0.5 * generation
    # and the chunks spread over the generation instead of arriving in one burst
    assert arrivals[len(arrivals) // 2] - arrivals[0] > 0.3 * generation
