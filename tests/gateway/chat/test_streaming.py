"""Streaming is incremental: chunks reach the client as the upstream produces them."""

from __future__ import annotations

import time

from tests.conftest import Gateway
from tests.support.sse import assert_incremental, events


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
    with gateway.stream_chat(key, body) as response:
        received = list(events(response))
    assert_incremental(received, started=started, tokens=tokens, tpot_ms=tpot)
