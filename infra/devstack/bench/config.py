"""What a bench run measures: its phases, paths and counts."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from devstack.__main__ import DEFAULT_TOKENIZERS
from devstack.tables import TEMPLATE_PATH

ROOT = TEMPLATE_PATH.parent
RESULTS_DIR = ROOT / "bench-results"
MODEL = "qwen3"
# The same model, forwarded natively on the Responses and Messages APIs (native_routes).
NATIVE_MODEL = "qwen3-native"
# The same upstream model, declared as an embedding model (routes ["embeddings"]).
EMBEDDING_MODEL = "qwen3-embed"
PROMPT = "Hello! Tell me something about the sea."
# Requests per phase at scale 1, by concurrency; other concurrencies get the c=32 count.
BASE_REQUESTS = {1: 300, 32: 1500}
DIRECT = "direct"
GATEWAY = "gateway"
GATEWAY_MOTO = "gateway, moto DB"

KEY_CACHE_TTL = 30
Progress = Callable[[str], None]


def say(message: str) -> None:
    sys.stdout.write(f">> {message}\n")
    sys.stdout.flush()


@dataclass(frozen=True)
class Phase:
    stream: bool
    concurrency: int
    requests: int

    @property
    def name(self) -> str:
        return f"{'stream' if self.stream else 'non-stream'} c={self.concurrency}"


def default_phases(scale: float = 1.0, concurrencies: Sequence[int] = (1, 32)) -> tuple[Phase, ...]:
    return tuple(
        Phase(
            stream=stream,
            concurrency=c,
            requests=max(1, round(BASE_REQUESTS.get(c, BASE_REQUESTS[32]) * scale)),
        )
        for stream in (False, True)
        for c in concurrencies
    )


@dataclass(frozen=True)
class BenchConfig:
    phases: tuple[Phase, ...] = field(default_factory=default_phases)
    # Each phase's requests are split into this many rounds per path, paths alternating.
    rounds: int = 2
    # Unmeasured requests per path before a phase's first round (at least 2 x concurrency).
    warmup: int = 20
    completion_tokens: int = 50
    # The stand-in DynamoDB answers the usage write after this long (real DynamoDB: a few ms).
    db_latency_ms: float = 0.0
    moto_usage: bool = True
    tokenizers_dir: Path = DEFAULT_TOKENIZERS
    logs_dir: Path = RESULTS_DIR / "logs"
    # Cold instance: this many fresh gateway processes per variant (0: skip the scenario).
    cold_runs: int = 3
    # Per-route CPU: sequential requests per route on the gateway path (0: skip).
    route_requests: int = 100

    @property
    def paths(self) -> tuple[str, ...]:
        return (DIRECT, GATEWAY, GATEWAY_MOTO) if self.moto_usage else (DIRECT, GATEWAY)
