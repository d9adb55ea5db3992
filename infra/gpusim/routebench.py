"""The cost of gpusim's /v1/responses and /v1/messages against its chat route, side by side.

    python -m gpusim --port 8123 --tokenizers-dir ../shared/tokenizers --models qwen3 \\
        --completion-tokens 50 &
    python -m gpusim.routebench http://127.0.0.1:8123 [rounds]

The same one-message conversation goes to each route in turn, buffered then streamed,
60 requests per route per round, rounds interleaved; each route's mean time per request is
reported with its ratio to the chat route's in the same run.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import httpx

_ASK = [{"role": "user", "content": "Hello"}]
ROUTES: dict[str, tuple[str, dict[str, Any]]] = {
    "chat": ("/v1/chat/completions", {"model": "qwen3", "messages": _ASK}),
    "responses": ("/v1/responses", {"model": "qwen3", "input": "Hello"}),
    "messages": ("/v1/messages", {"model": "qwen3", "messages": _ASK, "max_tokens": 100}),
}
PER_ROUND = 60


def _run(client: httpx.Client, path: str, body: dict[str, Any]) -> float:
    start = time.perf_counter()
    for _ in range(PER_ROUND):
        if body.get("stream"):
            with client.stream("POST", path, json=body) as response:
                response.raise_for_status()
                for _chunk in response.iter_bytes():
                    pass
        else:
            client.post(path, json=body).raise_for_status()
    return time.perf_counter() - start


def measure(base_url: str, rounds: int) -> dict[bool, dict[str, float]]:
    """Seconds per request, by streamed (False/True) and route."""
    results: dict[bool, dict[str, float]] = {}
    with httpx.Client(base_url=base_url, timeout=60) as client:
        for path, body in ROUTES.values():  # warm: tokenizer and prompt caches
            client.post(path, json=body).raise_for_status()
        for stream in (False, True):
            totals = dict.fromkeys(ROUTES, 0.0)
            for _ in range(rounds):
                for name, (path, body) in ROUTES.items():
                    totals[name] += _run(client, path, {**body, "stream": stream})
            results[stream] = {k: v / (rounds * PER_ROUND) for k, v in totals.items()}
    return results


def main(argv: list[str]) -> None:
    base_url = argv[0] if argv else "http://127.0.0.1:8123"
    rounds = int(argv[1]) if len(argv) > 1 else 5
    for stream, per_route in measure(base_url, rounds).items():
        chat = per_route["chat"]
        line = ", ".join(
            f"{name} {seconds * 1000:.2f} ms ({seconds / chat:.2f}x)"
            for name, seconds in per_route.items()
        )
        sys.stdout.write(f"{'streamed' if stream else 'buffered'}: {line}\n")


if __name__ == "__main__":
    main(sys.argv[1:])
