"""A bounded load run against the gateway, for the usage-at-scale tests (test_load.py).

One key, one model, `concurrency` clients: 20 % streams the client drops after two
chunks, 5 % requests the simulated upstream fails, the rest whole (half streamed). Every
response's status, request id and duration is kept; a sampler watches the key's budget
counter while the run lasts.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx

# The simulated upstream's own time: at most TTFT + tokens x TPOT.
SIM = {"ttft_ms": 5, "tpot_ms": 5, "completion_tokens": 12}
UPSTREAM_SECONDS = (5 + 12 * 5) / 1000
MAX_TOKENS = 12


@dataclass
class Outcome:
    kind: str  # "whole", "stream", "dropped", "fault"
    status: int
    request_id: str | None
    seconds: float
    error: str | None = None


@dataclass
class LoadRun:
    outcomes: list[Outcome] = field(default_factory=list)
    budget_samples: list[int] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def done(self) -> int:
        with self.lock:
            return len(self.outcomes)

    def statuses(self) -> dict[int, int]:
        counts: dict[int, int] = {}
        for o in self.outcomes:
            counts[o.status] = counts.get(o.status, 0) + 1
        return counts


def _one(base_url: str, secret: str, kind: str, client: httpx.Client) -> Outcome:
    body: dict[str, Any] = {
        "model": "qwen3",
        "messages": [{"role": "user", "content": "Count to twelve, please."}],
        "max_tokens": MAX_TOKENS,
        "stream": kind in ("stream", "dropped"),
        "sim": dict(SIM),
    }
    if kind == "fault":
        body["sim"]["fail_status"] = 500
    headers = {"Authorization": f"Bearer {secret}"}
    started = time.monotonic()
    if not body["stream"]:
        response = client.post(f"{base_url}/chat/completions", json=body, headers=headers)
        error = response.text[:300] if response.status_code != 200 else None
        return Outcome(kind, response.status_code, response.headers.get("x-request-id"),
                       time.monotonic() - started, error)  # fmt: skip
    with client.stream("POST", f"{base_url}/chat/completions", json=body, headers=headers) as r:
        if r.status_code != 200:
            r.read()
            return Outcome(kind, r.status_code, r.headers.get("x-request-id"),
                           time.monotonic() - started, r.text[:300])  # fmt: skip
        for chunks, _ in enumerate(r.iter_lines(), start=1):
            if kind == "dropped" and chunks >= 2:
                break  # closes the connection mid-stream
        return Outcome(kind, r.status_code, r.headers.get("x-request-id"),
                       time.monotonic() - started)  # fmt: skip


def run_load(
    base_url: str,
    secret: str,
    *,
    requests: int,
    concurrency: int,
    read_budget: Callable[[], int] | None = None,
    seed: int = 10,
) -> LoadRun:
    rng = random.Random(seed)
    kinds = [
        "dropped" if x < 0.2 else "fault" if x < 0.25 else rng.choice(["whole", "stream"])
        for x in (rng.random() for _ in range(requests))
    ]
    run = LoadRun()
    stop = threading.Event()

    def sample() -> None:
        while read_budget is not None and not stop.is_set():
            try:
                run.budget_samples.append(read_budget())
            except Exception:
                continue
            stop.wait(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    with httpx.Client(timeout=60, limits=limits) as client:

        def send(kind: str) -> None:
            outcome = _one(base_url, secret, kind, client)
            with run.lock:
                run.outcomes.append(outcome)

        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            list(pool.map(send, kinds))
    stop.set()
    sampler.join(timeout=5)
    return run
