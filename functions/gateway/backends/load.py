"""Each endpoint's load as its server reports it: vLLM's `/metrics`, sampled in the
background, never on a request's path.

`parse_load` reads the Prometheus text with prometheus_client's parser: the V1 engine's
`vllm:num_requests_running`, `vllm:num_requests_waiting` and `vllm:kv_cache_usage_perc`
(older servers: `vllm:gpu_cache_usage_perc`), summed over the engines and models a server
reports. `LoadSampler` asks every OpenAI-compatible endpoint for it every `interval`
seconds in one task of this process and stores it on the endpoint's EndpointState; a
sample older than FRESH_SECONDS is ignored, so an instance that was frozen (Lambda) or an
endpoint without /metrics (SageMaker, a server that answers 404) is routed on what this
instance knows alone. docs/ROUTING.md.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from gateway.backends.health import EndpointLoad, EndpointState

logger = logging.getLogger(__name__)

_RUNNING = "vllm:num_requests_running"
_WAITING = "vllm:num_requests_waiting"
_KV_USAGE = ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc")
_TIMEOUT = aiohttp.ClientTimeout(total=2.0)


def parse_load(text: str, *, at: float, model: str | None = None) -> EndpointLoad | None:
    """The load in a /metrics page (of `model`'s engines only, where the samples carry a
    `model_name`), or None when it has none of vLLM's gauges. ValueError: not Prometheus
    text."""
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            named = sample.labels.get("model_name")
            if model is not None and named is not None and named != model:
                continue
            if sample.name in (_RUNNING, _WAITING, *_KV_USAGE):
                values[sample.name] = values.get(sample.name, 0.0) + sample.value
    if _RUNNING not in values and _WAITING not in values:
        return None
    kv = next((values[name] for name in _KV_USAGE if name in values), 0.0)
    return EndpointLoad(
        running=values.get(_RUNNING, 0.0), waiting=values.get(_WAITING, 0.0), kv_usage=kv, at=at
    )


class LoadSampler:
    """One background task per process that keeps every watched endpoint's load fresh."""

    def __init__(self, *, interval: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self._clock = clock
        self._watched: dict[tuple[str, str], list[EndpointState]] = {}
        self._task: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None

    def watch(self, metrics_url: str, model: str, state: EndpointState) -> None:
        """Sample `metrics_url` for `model` (the name the server knows it by) into `state`."""
        states = self._watched.setdefault((metrics_url, model), [])
        if all(s is not state for s in states):
            states.append(state)

    def start(self) -> None:
        """Start sampling on the running loop, if not started yet (never waits)."""
        if self.interval <= 0 or not self._watched:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # called outside a loop: the next routed request starts it
            return
        if self._task is None or self._task.done() or self._task.get_loop() is not loop:
            self._session = None
            self._task = loop.create_task(self._run())

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def sample_once(self) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=_TIMEOUT)
        watched = list(self._watched)
        await asyncio.gather(*(self._sample(self._session, *item) for item in watched))

    async def _run(self) -> None:
        while True:
            await self.sample_once()
            await asyncio.sleep(self.interval)

    async def _sample(self, session: aiohttp.ClientSession, url: str, model: str) -> None:
        try:
            async with session.get(url) as response:
                if response.status != 200:
                    return
                text = await response.text()
        except (aiohttp.ClientError, TimeoutError, UnicodeDecodeError) as exc:
            logger.debug("endpoint metrics unavailable", extra={"error": type(exc).__name__})
            return
        try:
            load = parse_load(text, at=self._clock(), model=model)
        except ValueError:
            load = None
        for state in self._watched[(url, model)]:
            state.load = load
