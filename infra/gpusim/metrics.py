"""``GET /metrics``: the V1 engine's Prometheus metrics (vllm/v1/metrics/loggers.py), made
with prometheus_client as vLLM makes them, labelled ``model_name`` and ``engine`` ("0").

- ``vllm:num_requests_running``, ``vllm:num_requests_waiting`` (gauges: sequences);
- ``vllm:kv_cache_usage_perc`` (gauge, 0 to 1: the fraction of blocks in use);
- ``vllm:prefix_cache_queries``, ``vllm:prefix_cache_hits`` (counters of prompt tokens
  looked up and found; exposed with prometheus_client's ``_total`` suffix);
- ``vllm:time_to_first_token_seconds`` (histogram, vLLM's buckets).

One registry per app (never the process-wide default), so several simulated replicas can
live in one process.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from gpusim.engine import Engine

TTFT_BUCKETS = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5,
    10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0,
)  # fmt: skip
LABELS = ("model_name", "engine")
CONTENT_TYPE = CONTENT_TYPE_LATEST


def _reader(engine: Engine, attribute: str) -> Callable[[], float]:
    return lambda: float(getattr(engine, attribute))


class SimMetrics:
    """The engines' state, read at scrape time, and the counters they feed."""

    def __init__(self, engines: Mapping[str, Engine]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        running = Gauge(
            "vllm:num_requests_running",
            "Number of requests in model execution batches.",
            LABELS,
            registry=self.registry,
        )
        waiting = Gauge(
            "vllm:num_requests_waiting",
            "Number of requests waiting to be processed.",
            LABELS,
            registry=self.registry,
        )
        usage = Gauge(
            "vllm:kv_cache_usage_perc",
            "KV-cache usage. 1 means 100 percent usage.",
            LABELS,
            registry=self.registry,
        )
        self._queries = Counter(
            "vllm:prefix_cache_queries",
            "Prefix cache queries, in terms of number of queried tokens.",
            LABELS,
            registry=self.registry,
        )
        self._hits = Counter(
            "vllm:prefix_cache_hits",
            "Prefix cache hits, in terms of number of cached tokens.",
            LABELS,
            registry=self.registry,
        )
        self._ttft = Histogram(
            "vllm:time_to_first_token_seconds",
            "Histogram of time to first token in seconds.",
            LABELS,
            buckets=TTFT_BUCKETS,
            registry=self.registry,
        )
        self._children: dict[str, tuple[Counter, Counter, Histogram]] = {}
        for name, engine in engines.items():
            labels = (name, "0")
            running.labels(*labels).set_function(_reader(engine, "running"))
            waiting.labels(*labels).set_function(_reader(engine, "waiting"))
            usage.labels(*labels).set_function(engine.kv.pool.usage)
            self._children[name] = (
                self._queries.labels(*labels),
                self._hits.labels(*labels),
                self._ttft.labels(*labels),
            )

    def prefix_lookup(self, model: str, *, queries: int, hits: int) -> None:
        counted, found, _ = self._children[model]
        counted.inc(queries)
        found.inc(hits)

    def first_token(self, model: str, seconds: float) -> None:
        self._children[model][2].observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
