"""Each endpoint's load as its server reports it: vLLM's `/metrics`, sampled in the
background, never on a request's path.

`parse_load` reads the Prometheus text with prometheus_client's parser: the V1 engine's
`vllm:num_requests_running`, `vllm:num_requests_waiting` and `vllm:kv_cache_usage_perc`
(older servers: `vllm:gpu_cache_usage_perc`), summed over the engines and models a server
reports. `LoadSampler`, one task of this process, keeps every watched endpoint's
EndpointState.load fresh every `interval` seconds. With a LoadStore (backends/loadstore.py)
the load is shared: each round reads every watched endpoint's item in one BatchGetItem,
and scrapes (then writes) only the endpoints whose item nobody has claimed for `interval`,
after winning the conditional claim, so N instances scrape an endpoint about once per
interval, not N times. Without a store, or while DynamoDB fails, each instance scrapes
for itself. A sample older than LOAD_FRESH_SECONDS is ignored, so an instance that was
frozen (Lambda) or an endpoint without /metrics (SageMaker, a server that answers 404) is
routed on what this instance knows alone. docs/ROUTING.md.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from gateway.backends.health import EndpointLoad, EndpointState
from gateway.backends.loadstore import Figures, LoadStore, SharedSample
from gateway.backends.sessions import close_on_its_loop
from gateway.errors import DependencyError

logger = logging.getLogger(__name__)

_RUNNING = "vllm:num_requests_running"
_WAITING = "vllm:num_requests_waiting"
_KV_USAGE = ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc")
_TIMEOUT = aiohttp.ClientTimeout(total=2.0)

T = TypeVar("T")


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


@dataclass
class _Watched:
    """One endpoint to sample: its /metrics page, the name its server knows the model by,
    and this process's state of it (whose model and name key the shared item)."""

    url: str
    model: str
    state: EndpointState

    @property
    def item(self) -> tuple[str, str]:
        return (self.state.model, self.state.name)


class LoadSampler:
    """One background task per process that keeps every watched endpoint's load fresh."""

    def __init__(
        self,
        *,
        interval: float,
        store: LoadStore | None = None,
        deadline_seconds: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.interval = interval
        self._store = store
        self._deadline = deadline_seconds
        self._clock = clock  # EndpointLoad.at (monotonic, this process's)
        self._wall = wall  # the shared items' times (epoch seconds, every instance's)
        self._watched: dict[tuple[str, str], _Watched] = {}
        self._task: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None
        self._store_failing = False
        self.scrapes = 0  # /metrics pages this process asked for

    def watch(self, metrics_url: str, model: str, state: EndpointState) -> None:
        """Sample `metrics_url` for `model` (the name the server knows it by) into `state`."""
        watched = _Watched(metrics_url, model, state)
        self._watched.setdefault(watched.item, watched)

    def start(self) -> None:
        """Start sampling on the running loop, if not started yet (never waits)."""
        if self.interval <= 0 or not self._watched:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # called outside a loop: the next routed request starts it
            return
        if self._task is None or self._task.done() or self._task.get_loop() is not loop:
            if self._task is not None and self._task.get_loop() is not loop:
                # The old loop's task and session, ended on that loop (both bound to it).
                old = self._task.get_loop()
                if not old.is_closed():
                    old.call_soon_threadsafe(self._task.cancel)
                if self._session is not None:
                    close_on_its_loop(self._session, old)
                self._session = None
            # (a task that ended on this loop leaves a session this loop can use again)
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
        """One round: the shared items read (and the stale ones sampled and written), or,
        without a store or while it fails, every endpoint scraped by this process."""
        watched = list(self._watched.values())
        if not watched:
            return
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=_TIMEOUT)
        store = self._store
        if store is not None:
            try:
                shared = await self._call(lambda: store.read(endpoints=[w.item for w in watched]))
            except (TimeoutError, DependencyError) as exc:
                self._store_down(exc)
            else:
                self._store_failing = False
                now, wall = self._clock(), self._wall()
                await asyncio.gather(
                    *(self._shared(store, w, shared.get(w.item), now, wall) for w in watched)
                )
                return
        await asyncio.gather(*(self._sample(w) for w in watched))

    async def _run(self) -> None:
        while True:
            try:
                await self.sample_once()
            except Exception:  # the loop must outlive a surprise: routing only loses figures
                logger.warning("endpoint load round failed", exc_info=True)
            await asyncio.sleep(self.interval)

    async def _shared(
        self, store: LoadStore, w: _Watched, item: SharedSample | None, now: float, wall: float
    ) -> None:
        """Take the item's figures; sample the endpoint (and share it) only if nobody has
        claimed it within the interval and this instance's claim wins."""
        if item is not None and item.sampled_at > 0:
            at = now - max(wall - item.sampled_at, 0.0)  # its age, on this process's clock
            figures = item.figures
            w.state.load = None if figures is None else _load(figures, at, w.state.in_flight)
        if item is not None and wall - item.claimed_at < self.interval:
            return  # another instance (or this one) has it in hand
        state = w.state
        try:
            won = await self._call(
                lambda: store.claim(
                    model=state.model, endpoint=state.name, now=wall, interval=self.interval
                )
            )
        except (TimeoutError, DependencyError) as exc:
            self._store_down(exc)
            await self._sample(w)  # unshared this round: routing still gets the figure
            return
        if not won:
            return  # another instance won: its figures arrive with the next read
        answered, load = await self._sample(w)
        if not answered:
            return  # nothing to share; the claim lapses after the interval
        figures = None if load is None else Figures(load.running, load.waiting, load.kv_usage)
        sampled_at = self._wall()
        try:
            await self._call(
                lambda: store.put(
                    model=state.model, endpoint=state.name, figures=figures, sampled_at=sampled_at
                )
            )
        except (TimeoutError, DependencyError) as exc:
            self._store_down(exc)

    async def _call(self, call: Callable[[], T]) -> T:
        """A store call in a worker thread, within the deadline (TimeoutError past it)."""
        work: Awaitable[T] = asyncio.to_thread(call)
        return await asyncio.wait_for(work, timeout=self._deadline)

    def _store_down(self, exc: Exception) -> None:
        """Logged once per run of failures: routing goes on with this process's own
        samples (each instance scrapes, as before the load was shared)."""
        if not self._store_failing:
            self._store_failing = True
            logger.warning(
                "endpoint load not shared", extra={"error": str(exc) or type(exc).__name__}
            )

    async def _sample(self, w: _Watched) -> tuple[bool, EndpointLoad | None]:
        """Scrape the endpoint's /metrics into its state. (answered, load): answered is
        False when no page came (the state keeps its last figures, which soon go stale);
        load is None for a page without vLLM's gauges, or a status other than 200."""
        session = self._session
        assert session is not None
        self.scrapes += 1
        try:
            async with session.get(w.url) as response:
                text = await response.text() if response.status == 200 else None
        except (aiohttp.ClientError, TimeoutError, UnicodeDecodeError) as exc:
            logger.debug("endpoint metrics unavailable", extra={"error": type(exc).__name__})
            return False, None
        load = None
        if text is not None:
            try:
                load = parse_load(text, at=self._clock(), model=w.model)
            except ValueError:
                load = None
            if load is not None:
                load = dataclasses.replace(load, mine=w.state.in_flight)
        w.state.load = load
        return True, load


def _load(figures: Figures, at: float, mine: int) -> EndpointLoad:
    return EndpointLoad(
        running=figures.running,
        waiting=figures.waiting,
        kv_usage=figures.kv_usage,
        at=at,
        mine=mine,
    )
