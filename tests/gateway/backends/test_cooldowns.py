"""Cooldowns shared through DynamoDB (moto, tables from template.yaml): a second gateway
instance, which never saw the endpoint fail, keeps traffic off it until the cooldown ends
or the health probe clears it; items are written only when the state changes."""

from __future__ import annotations

import json
import random
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import pytest
from gateway.backends import HttpPool, OpenAIBackend
from gateway.backends.attempts import RouteTrace
from gateway.backends.cooldowns import CooldownCache, CooldownStore
from gateway.backends.probe import apply, probe_models
from gateway.backends.routing import RoutedBackend, Router, RoutingPolicy, Target
from gateway.models.registry import ModelConfig, OpenAIEndpoint
from gateway.settings import Settings

from tests.gateway.backends.test_routing import BODY, Clock
from tests.support.faulty import faulty_upstreams

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class CountingStore(CooldownStore):
    def __init__(self, client: Any) -> None:
        super().__init__(client=client, table=Settings().usage_table)
        self.reads = 0
        self.writes = 0

    def read(self, *, model: str) -> Any:
        self.reads += 1
        return super().read(model=model)

    def put(self, **kwargs: Any) -> None:
        self.writes += 1
        super().put(**kwargs)

    def put_backoff(self, **kwargs: Any) -> bool:
        self.writes += 1
        return super().put_backoff(**kwargs)


class Instance:
    """One gateway instance's routing: its own memory, sharing only DynamoDB."""

    def __init__(self, store: CooldownStore, clock: Clock, urls: list[str]) -> None:
        self.pool = HttpPool(Settings())
        self.router = Router(
            policy=RoutingPolicy(allowed_fails=3, cooldown_seconds=60),
            cooldowns=CooldownCache(store=store, ttl=5, clock=clock),
            clock=clock,
            rng=random.Random(1),
            sleep=clock.sleep,
        )
        targets = []
        for name, url in zip("ab", urls, strict=True):
            upstream = OpenAIEndpoint(base_url=url, name=name)
            state = self.router.state(
                "m", name, weight=1000 if name == "a" else 1, max_concurrency=None
            )
            targets.append(
                Target(state, OpenAIBackend(upstream=upstream, pool=self.pool), "m", name)
            )
        self.backend = RoutedBackend(router=self.router, tiers=[targets])

    async def send(self, count: int) -> list[str | None]:
        """`count` requests, each from a key of its own."""
        served = []
        for number in range(count):
            trace = RouteTrace()
            await self.backend.complete(BODY, trace=trace, tenant=f"key-{number}")
            served.append(trace.endpoint)
        return served


@pytest.fixture
async def pools() -> AsyncIterator[list[Instance]]:
    made: list[Instance] = []
    yield made
    for instance in made:
        await instance.pool.close()


async def test_second_instance_sees_the_first_ones_cooldown_until_the_probe_clears_it(
    mock_dynamodb: Any, pools: list[Instance]
) -> None:
    clock = Clock()
    store = CountingStore(mock_dynamodb)
    async with faulty_upstreams(2) as [sick, good]:
        sick.mode, sick.status = "status", 503
        first = Instance(store, clock, [sick.url, good.url])
        second = Instance(store, clock, [sick.url, good.url])
        pools.extend([first, second])
        assert await first.send(3) == ["b", "b", "b"]  # each failed over from `a`
        assert sick.hits == 3 and store.writes == 1  # one write: the cooldown began
        sick.mode = "ok"  # healthy again, but nobody has said so yet
        assert await second.send(10) == ["b"] * 10
        assert sick.hits == 3  # the second instance never tried it
        # The probe finds it healthy and clears the item; the second instance sees that
        # once its cache (5 s) expires.
        config = ModelConfig.model_validate(
            {"id": "m", "tokenizer": "t", "endpoints": [
                {"name": "a", "type": "openai", "base_url": sick.url},
                {"name": "b", "type": "openai", "base_url": good.url}]}
        )  # fmt: skip
        results = apply(await probe_models([config]), store=store, cooldown_seconds=60, clock=clock)
        assert [(r.endpoint, r.change) for r in results] == [("a", "cleared"), ("b", None)]
        assert store.writes == 2
        clock.now += 6
        assert await second.send(1) == ["a"]  # the weight sends it to `a` again


async def test_cooldown_ends_by_itself_on_every_instance(
    mock_dynamodb: Any, pools: list[Instance]
) -> None:
    clock = Clock()
    store = CountingStore(mock_dynamodb)
    async with faulty_upstreams(2) as [sick, good]:
        sick.mode, sick.status = "status", 500
        first = Instance(store, clock, [sick.url, good.url])
        second = Instance(store, clock, [sick.url, good.url])
        pools.extend([first, second])
        await first.send(3)
        sick.mode = "ok"
        clock.now += 30
        assert await second.send(3) == ["b"] * 3
        clock.now += 31  # 61 s after the cooldown began
        assert await second.send(1) == ["a"]
        assert store.writes == 1


async def test_the_shared_state_is_read_at_most_once_per_cache_period(
    mock_dynamodb: Any, pools: list[Instance]
) -> None:
    clock = Clock()
    store = CountingStore(mock_dynamodb)
    async with faulty_upstreams(2) as ups:
        instance = Instance(store, clock, [u.url for u in ups])
        pools.append(instance)
        await instance.send(20)
        assert store.reads == 1 and store.writes == 0  # healthy traffic writes nothing
        clock.now += 5
        await instance.send(1)
        assert store.reads == 2


async def test_a_failing_store_does_not_fail_requests(pools: list[Instance]) -> None:
    class Broken(CooldownStore):
        def __init__(self) -> None:
            pass

        def read(self, *, model: str) -> Any:
            from gateway.errors import DependencyError

            raise DependencyError("DynamoDB is unavailable (test)")

    clock = Clock()
    async with faulty_upstreams(2) as ups:
        instance = Instance(Broken(), clock, [u.url for u in ups])
        pools.append(instance)
        assert await instance.send(3) == ["a", "a", "a"]


async def test_probe_cools_down_an_unhealthy_endpoint_once(mock_dynamodb: Any) -> None:
    clock = Clock()
    store = CountingStore(mock_dynamodb)
    async with faulty_upstreams(2) as [down, old]:
        down.mode = "hang"  # /health answers 503
        old.mode = "no_health_route"  # no /health: /v1/models decides
        config = ModelConfig.model_validate(
            {"id": "m", "tokenizer": "t", "endpoints": [
                {"name": "down", "type": "openai", "base_url": down.url},
                {"name": "old", "type": "openai", "base_url": old.url + "/v1"},
                {"name": "sm", "type": "sagemaker", "endpoint_name": "x"}]}
        )  # fmt: skip
        for _ in range(2):
            results = apply(
                await probe_models([config]), store=store, cooldown_seconds=60, clock=clock
            )
        assert store.writes == 1  # cooled once; the second run changed nothing
        seen = {r.endpoint: (r.healthy, r.detail) for r in results}
        assert seen == {
            "down": (False, "/health 503"),
            "old": (True, "/v1/models 200"),
            "sm": (None, "not probed (SageMaker)"),
        }
        assert store.read(model="m")["down"].until == clock.now + 60


async def test_probe_asks_sagemaker_for_each_endpoints_status(mock_dynamodb: Any) -> None:
    """DescribeEndpoint (moto's SageMaker): an endpoint in service is healthy, a missing one
    is not, and the probe cools it down like an HTTP endpoint that fails its /health."""
    import boto3

    sagemaker = boto3.client("sagemaker")
    sagemaker.create_model(
        ModelName="qwen3-model",
        ExecutionRoleArn="arn:aws:iam::123456789012:role/sagemaker",
        PrimaryContainer={"Image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/vllm:latest"},
    )
    sagemaker.create_endpoint_config(
        EndpointConfigName="qwen3-config",
        ProductionVariants=[{"VariantName": "all", "ModelName": "qwen3-model",
                             "InitialInstanceCount": 1, "InstanceType": "ml.g4dn.xlarge"}],
    )  # fmt: skip
    sagemaker.create_endpoint(EndpointName="qwen3-live", EndpointConfigName="qwen3-config")
    config = ModelConfig.model_validate(
        {"id": "m", "tokenizer": "t", "endpoints": [
            {"name": "live", "type": "sagemaker", "endpoint_name": "qwen3-live"},
            {"name": "gone", "type": "sagemaker", "endpoint_name": "qwen3-deleted"}]}
    )  # fmt: skip
    store = CountingStore(mock_dynamodb)
    clock = Clock()
    results = apply(
        await probe_models([config], describe=sagemaker.describe_endpoint),
        store=store,
        cooldown_seconds=60,
        clock=clock,
    )
    seen = {r.endpoint: (r.healthy, r.detail, r.change) for r in results}
    assert seen["live"] == (True, "DescribeEndpoint InService", None)
    assert seen["gone"][0] is False and seen["gone"][2] == "cooled"
    assert seen["gone"][1].startswith("DescribeEndpoint failed (")
    assert store.read(model="m")["gone"].until == clock.now + 60


async def test_a_retry_after_is_shared_capped_and_shown_in_endpoints_list(
    mock_dynamodb: Any, pools: list[Instance]
) -> None:
    """An endpoint's 429 with Retry-After: 3600 is written once, for the cooldown period
    (60 s) only; the other instance skips it while its peer is ready, and `gateway
    endpoints list` shows it as backing off (before: `ok`, though benched for an hour)."""
    from gateway.aws import AwsClients
    from gateway.backends.endpoints_cli import endpoint_rows

    clock = Clock()
    store = CountingStore(mock_dynamodb)
    async with faulty_upstreams(2) as [busy, good]:
        busy.mode, busy.status, busy.retry_after = "status", 429, "3600"
        first = Instance(store, clock, [busy.url, good.url])
        second = Instance(store, clock, [busy.url, good.url])
        pools.extend([first, second])
        assert await first.send(3) == ["b", "b", "b"]
        assert busy.hits == 1 and store.writes == 1  # skipped after its answer; one write
        assert await second.send(3) == ["b", "b", "b"]
        assert busy.hits == 1
        config = json.dumps({"models": [{"id": "m", "tokenizer": "t", "endpoints": [
            {"name": "a", "type": "openai", "base_url": busy.url},
            {"name": "b", "type": "openai", "base_url": good.url}]}]})  # fmt: skip
        settings = Settings(models_config=config)
        rows = {r["endpoint"]: r for r in endpoint_rows(settings, AwsClients(), now=clock.now)}
        assert rows["a"]["state"] == "backing_off"
        assert rows["a"]["reason"] == "upstream_rate_limited"
        until = datetime.fromisoformat(rows["a"]["until"])
        assert until.timestamp() == clock.now + 60
        assert rows["b"]["state"] == "ok"
        clock.now += 61
        rows = {r["endpoint"]: r for r in endpoint_rows(settings, AwsClients(), now=clock.now)}
        assert rows["a"]["state"] == "ok"


async def test_a_cooldown_and_a_backoff_do_not_erase_each_other(mock_dynamodb: Any) -> None:
    store = CooldownStore(client=mock_dynamodb, table=Settings().usage_table)
    store.put_backoff(model="m", endpoint="a", until=1060.0, reason="upstream_overloaded", now=1000)
    store.put(model="m", endpoint="a", until=1030.0, reason="probe: /health 503", now=1001)
    assert not store.put_backoff(
        model="m", endpoint="a", until=1050.0, reason="upstream_overloaded", now=1002
    )  # a shorter one does not replace the longer
    [item] = store.read(model="m").values()
    assert (item.until, item.reason) == (1030.0, "probe: /health 503")
    assert (item.backoff_until, item.backoff_reason) == (1060.0, "upstream_overloaded")
