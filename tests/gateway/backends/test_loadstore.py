"""Endpoint load shared through DynamoDB (backends/loadstore.py, backends/load.py), against
moto's server with DynamoDB's per-item write serialization (devstack.motofix): instances
that share nothing but the table see one another's samples, and an endpoint's /metrics is
scraped about once per interval however many instances there are."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest
from aiohttp import web
from devstack.dynamodb import FaultControl
from gateway.backends.affinity import Ring, RouteHint
from gateway.backends.attempts import RouteTrace
from gateway.backends.cooldowns import CooldownCache
from gateway.backends.health import LOAD_FRESH_SECONDS, EndpointState
from gateway.backends.load import LoadSampler
from gateway.backends.loadstore import Figures, LoadStore
from gateway.backends.pool import Backends
from gateway.backends.routing import Router, RoutingPolicy
from gateway.backends.wire import CHAT
from gateway.errors import DependencyError
from gateway.models.registry import ModelRegistry
from gateway.observability.tracing import Tracing
from gateway.settings import Settings

from tests.support.servers import free_port, free_ports

pytestmark = pytest.mark.anyio

TABLE = Settings().usage_table


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _page(running: float, waiting: float) -> str:
    return (
        "# TYPE vllm:num_requests_running gauge\n"
        f'vllm:num_requests_running{{model_name="m"}} {running}\n'
        "# TYPE vllm:num_requests_waiting gauge\n"
        f'vllm:num_requests_waiting{{model_name="m"}} {waiting}\n'
        "# TYPE vllm:kv_cache_usage_perc gauge\n"
        'vllm:kv_cache_usage_perc{model_name="m"} 0.25\n'
    )


@dataclass
class Replica:
    """A vLLM-like server: /metrics with the gauges a test sets (counting the scrapes)
    and a chat answer (counting the requests)."""

    running: float = 0.0
    waiting: float = 0.0
    metrics: bool = True
    scrapes: int = 0
    chats: int = 0
    url: str = ""
    bodies: list[Any] = field(default_factory=list)

    async def page(self, _request: web.Request) -> web.Response:
        self.scrapes += 1
        if not self.metrics:
            return web.Response(status=404)
        return web.Response(text=_page(self.running, self.waiting))

    async def chat(self, _request: web.Request) -> web.Response:
        self.chats += 1
        return web.json_response(
            {
                "id": "cmpl-1",
                "object": "chat.completion",
                "choices": [{"index": 0, "message": {"content": "hi"}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 3, "completion_tokens": 1},
            }
        )


@asynccontextmanager
async def replicas(count: int, ports: list[int] | None = None) -> AsyncIterator[list[Replica]]:
    runners: list[web.AppRunner] = []
    made = [Replica() for _ in range(count)]
    try:
        for number, replica in enumerate(made):
            app = web.Application()
            app.router.add_get("/metrics", replica.page)
            app.router.add_post("/v1/chat/completions", replica.chat)
            runner = web.AppRunner(app, shutdown_timeout=0.1)
            await runner.setup()
            port = ports[number] if ports else free_port()
            await web.TCPSite(runner, "127.0.0.1", port).start()
            runners.append(runner)
            replica.url = f"http://127.0.0.1:{port}"
        yield made
    finally:
        for runner in runners:
            await runner.cleanup()


class Wall:
    """Every instance's wall clock (epoch seconds), moved by the test."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def _instance(
    model: str, url: str, wall: Wall, *, interval: float = 1.0
) -> tuple[LoadSampler, EndpointState]:
    """One gateway instance's sampler: its own DynamoDB client, its own state."""
    store = LoadStore(client=boto3.client("dynamodb"), table=TABLE)
    sampler = LoadSampler(interval=interval, store=store, wall=wall)
    state = EndpointState(model, "r0", 1.0)
    sampler.watch(f"{url}/metrics", "m", state)
    return sampler, state


async def test_one_instance_scrapes_and_the_other_sees_the_load_without_scraping(
    dynamodb: str,
) -> None:
    wall = Wall()
    async with replicas(1) as [replica]:
        replica.running, replica.waiting = 3, 2
        (first, seen_first), (second, seen_second) = (
            _instance("shared-1", replica.url, wall) for _ in range(2)
        )
        try:
            await first.sample_once()
            assert replica.scrapes == 1 and first.scrapes == 1
            wall.now += 0.4
            await second.sample_once()
            assert replica.scrapes == 1 and second.scrapes == 0  # read, not scraped
            load = seen_second.load
            assert load is not None and (load.running, load.waiting, load.kv_usage) == (3, 2, 0.25)
            assert seen_second.queue(load.at) == 5.0
            # An interval later the next one to look samples it again, once.
            replica.running = 7
            wall.now += 1.0
            await second.sample_once()
            await first.sample_once()
            assert replica.scrapes == 2 and second.scrapes == 1 and first.scrapes == 1
            assert seen_second.load is not None and seen_second.load.running == 7
        finally:
            await first.close()
            await second.close()
    assert seen_first.load is not None


async def test_many_instances_scrape_an_endpoint_once_per_interval(dynamodb: str) -> None:
    """Six instances sampling at the same moments: each round, all six find the item due,
    all six try the conditional claim, one wins (the local DynamoDB refuses the others'
    ConditionalCheckFailed, as DynamoDB does) and scrapes; every instance sees the load."""
    faults = FaultControl(dynamodb)
    before = faults.state()["condition_failures"].get("update_item", 0)
    wall = Wall()
    rounds = 5
    async with replicas(1) as [replica]:
        replica.running, replica.waiting = 4, 1
        instances = [_instance("shared-many", replica.url, wall) for _ in range(6)]
        try:
            for _ in range(rounds):
                await asyncio.gather(*(sampler.sample_once() for sampler, _ in instances))
                wall.now += 1.0
        finally:
            for sampler, _ in instances:
                await sampler.close()
    assert replica.scrapes == rounds  # not 6 x 5
    refused = faults.state()["condition_failures"].get("update_item", 0) - before
    # Each round's losers: those that read the item before the winner's claim landed.
    assert 1 <= refused <= rounds * 5
    for _, state in instances:
        assert state.load is not None and state.load.running + state.load.waiting == 5


async def test_figures_that_are_old_when_read_are_ignored(dynamodb: str) -> None:
    """The item's figures are 10 s old and another instance has just claimed it (its
    scrape still under way): this instance takes them with their age, and routing ignores
    them; so does an instance whose fresh figures aged while it was frozen."""
    wall = Wall()
    store = LoadStore(client=boto3.client("dynamodb"), table=TABLE)
    store.put(
        model="shared-old",
        endpoint="r0",
        figures=Figures(running=9, waiting=9, kv_usage=0.9),
        sampled_at=wall.now - 10,
    )
    assert store.claim(model="shared-old", endpoint="r0", now=wall.now, interval=1.0)
    async with replicas(1) as [replica]:
        sampler, state = _instance("shared-old", replica.url, wall)
        state.in_flight = 1
        try:
            await sampler.sample_once()
        finally:
            await sampler.close()
    assert replica.scrapes == 0  # claimed by the other instance
    assert state.load is not None and state.load.running == 9
    now = state.load.at + 10  # what the router's clock reads: the figures are 10 s old
    assert state.queue(now) == 1.0  # this instance's own request only
    assert state.queue(state.load.at + LOAD_FRESH_SECONDS - 1) == 18.0  # had it been fresh


async def test_a_server_without_metrics_is_scraped_once_per_interval_too(dynamodb: str) -> None:
    wall = Wall()
    async with replicas(1) as [replica]:
        replica.metrics = False
        first, second = (_instance("shared-404", replica.url, wall) for _ in range(2))
        try:
            await first[0].sample_once()
            await second[0].sample_once()
        finally:
            await first[0].close()
            await second[0].close()
    assert replica.scrapes == 1
    assert first[1].load is None and second[1].load is None  # P2C on in-flight counts


async def test_a_failing_store_leaves_each_instance_sampling_for_itself(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Broken(LoadStore):
        def __init__(self) -> None:
            self.reads = 0

        def read(self, *, endpoints: Any) -> Any:
            self.reads += 1
            raise DependencyError("DynamoDB is unavailable (test)")

    store = Broken()
    async with replicas(1) as [replica]:
        replica.running = 2
        sampler = LoadSampler(interval=1.0, store=store)
        state = EndpointState("m", "r0", 1.0)
        sampler.watch(f"{replica.url}/metrics", "m", state)
        with caplog.at_level(logging.WARNING, logger="gateway.backends.load"):
            try:
                await sampler.sample_once()
                await sampler.sample_once()
            finally:
                await sampler.close()
    assert store.reads == 2 and replica.scrapes == 2
    assert state.load is not None and state.load.running == 2
    warned = [r for r in caplog.records if r.getMessage() == "endpoint load not shared"]
    assert len(warned) == 1  # once per run of failures, not every second


def _routed(urls: list[str], model: str) -> tuple[Backends, Any]:
    """One gateway instance's routing (Backends, Router), sharing only the table."""
    endpoints = [
        {"type": "openai", "base_url": u, "name": f"r{n}", "model": "m"} for n, u in enumerate(urls)
    ]
    registry = ModelRegistry.from_json(
        json.dumps({"models": [{"id": model, "tokenizer": "t", "endpoints": endpoints}]})
    )
    router = Router(
        # A long interval: the claim of the first instance's round holds for the test.
        policy=RoutingPolicy(load_sample_seconds=60),
        cooldowns=CooldownCache(store=None, ttl=5),
        loads=LoadStore(client=boto3.client("dynamodb"), table=TABLE),
    )
    backends = Backends(
        settings=Settings(), registry=registry, router=router, tracer=Tracing(), aws=None
    )
    config = registry.get(model)
    assert config is not None
    return backends, backends.for_model(config, CHAT)


def _key_owned_by_r0() -> bytes:
    ring = Ring(["r0", "r1"], [1.0, 1.0])
    return next(k for n in range(100) if next(ring.walk(k := f"c{n}".encode())) == 0)


async def _send(routed: Any, key: bytes) -> str | None:
    trace = RouteTrace()
    body = {"model": "m", "messages": [{"role": "user", "content": "Hi"}]}
    await routed.complete(body, trace=trace, hint=RouteHint(prefix=key))
    return trace.endpoint


def test_a_second_gateway_routes_by_the_load_the_first_one_sampled(dynamodb: str) -> None:
    """Instance A samples both replicas (r0 has a queue); instance B, which never scraped,
    sends a conversation whose ring place is r0 to r1 instead; instance C, which has read
    nothing yet, still sends it to r0."""
    ports = free_ports(2)
    urls = [f"http://127.0.0.1:{port}" for port in ports]
    # Built outside the event loop, so no background sampling starts: the test samples.
    (a, _), (b, routed_b), (c, routed_c) = (_routed(urls, "shared-route") for _ in range(3))

    async def scenario() -> None:
        async with replicas(2, ports) as [busy, idle]:
            busy.running, busy.waiting = 16, 12
            try:
                assert a.sampler is not None and b.sampler is not None
                await a.sampler.sample_once()
                assert (busy.scrapes, idle.scrapes) == (1, 1)
                await b.sampler.sample_once()
                assert (busy.scrapes, idle.scrapes) == (1, 1)  # B read the items
                key = _key_owned_by_r0()
                assert await _send(routed_b, key) == "r1"
                assert await _send(routed_c, key) == "r0"
            finally:
                for backends in (a, b, c):
                    await backends.close()

    asyncio.run(scenario())


async def test_a_throttled_table_leaves_the_instance_sampling_for_itself(dynamodb: str) -> None:
    """DynamoDB refuses every call (ProvisionedThroughputExceeded, as the local DynamoDB
    sends it): the round is not lost, the instance scrapes the endpoint itself."""
    faults = FaultControl(dynamodb)
    wall = Wall()
    async with replicas(1) as [replica]:
        replica.running = 6
        sampler, state = _instance("shared-throttled", replica.url, wall)
        faults.set(throttle_rate=1.0)
        try:
            await sampler.sample_once()
        finally:
            faults.set(throttle_rate=0.0)
            await sampler.close()
    assert replica.scrapes == 1
    assert state.load is not None and state.load.running == 6
