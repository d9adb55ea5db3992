"""Routing across a model's endpoints, against real upstreams on 127.0.0.1 with injected
faults: failover before the first byte, never after it, never on a client error; the
retry budget; Retry-After; cooldowns and their expiry; what a request's trace records."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
from gateway.backends import HttpPool, OpenAIBackend
from gateway.backends.attempts import RouteTrace
from gateway.backends.cooldowns import CooldownCache
from gateway.backends.routing import RoutedBackend, Router, RoutingPolicy, Target
from gateway.errors import InvalidRequestError, UpstreamError, UpstreamTimeoutError
from gateway.models.registry import OpenAIEndpoint
from gateway.settings import Settings

from tests.support.faulty import faulty_upstreams, refused_url

pytestmark = pytest.mark.anyio

BODY: dict[str, Any] = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


POOLS: list[HttpPool] = []


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
async def _close_pools() -> AsyncIterator[None]:
    yield
    while POOLS:
        await POOLS.pop().close()


class Clock:
    """Wall time for the router, moved by the test (and by the router's sleeps)."""

    def __init__(self) -> None:
        self.now = 1_000_000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def make_router(clock: Clock, **policy: Any) -> Router:
    policy.setdefault("first_token_timeout", 0.5)
    return Router(
        policy=RoutingPolicy(**policy),
        cooldowns=CooldownCache(store=None, ttl=0, clock=clock),
        clock=clock,
        rng=random.Random(7),
        sleep=clock.sleep,
    )


def routed(
    router: Router,
    urls: list[str],
    *,
    weights: list[float] | None = None,
    read_timeout: float = 10,
) -> RoutedBackend:
    pool = HttpPool(Settings(upstream_connect_timeout=2, upstream_read_timeout=read_timeout))
    POOLS.append(pool)
    targets = []
    for index, url in enumerate(urls):
        name = "abc"[index]
        upstream = OpenAIEndpoint(base_url=url, name=name)
        weight = weights[index] if weights else 1.0
        state = router.state("m", name, weight=weight, max_concurrency=None)
        targets.append(Target(state, OpenAIBackend(upstream=upstream, pool=pool), "m", name))
    return RoutedBackend(router=router, tiers=[targets])


async def drain(chunks: AsyncIterator[dict[str, Any]]) -> list[dict[str, Any]]:
    return [chunk async for chunk in chunks]


async def test_refused_connection_fails_over_and_the_trace_names_the_server() -> None:
    clock = Clock()
    async with faulty_upstreams(1) as [good]:
        backend = routed(make_router(clock), [refused_url(), good.url])
        served = 0
        for _ in range(6):
            trace = RouteTrace()
            body = await backend.complete(BODY, trace=trace)
            assert body["choices"][0]["message"]["content"] == "hi"
            assert trace.endpoint == "b" and trace.attempts in (1, 2)
            served += 1
        assert served == 6 and good.hits == 6


async def test_503_and_stream_hang_before_first_token_fail_over() -> None:
    clock = Clock()
    async with faulty_upstreams(2) as [sick, good]:
        sick.mode, sick.status = "status", 503
        backend = routed(make_router(clock, allowed_fails=100), [sick.url, good.url])
        for _ in range(4):
            await backend.complete(BODY)
        sick.mode = "hang"
        for _ in range(3):
            trace = RouteTrace()
            chunks = await drain(await backend.open_stream({**BODY, "stream": True}, trace=trace))
            assert chunks[0]["choices"][0]["delta"]["content"] == "hi"
            assert trace.endpoint == "b"
        assert good.hits == 7 and sick.hits >= 1


async def test_a_hang_on_the_only_endpoint_is_not_cut_by_the_first_token_timeout() -> None:
    """With no other endpoint to go to, the first-token timeout does not apply."""
    clock = Clock()
    async with faulty_upstreams(1) as [slow]:
        slow.mode = "hang"
        backend = routed(make_router(clock, first_token_timeout=0.2), [slow.url])
        with anyio.move_on_after(1.0) as scope:
            await backend.open_stream({**BODY, "stream": True})
        assert scope.cancelled_caught  # still waiting after 1 s: not failed at 0.2 s


async def test_429_retry_after_is_honoured_within_the_budget() -> None:
    clock = Clock()
    async with faulty_upstreams(1) as [busy]:
        busy.mode, busy.retry_after = "status", "2"
        busy.status = 429
        backend = routed(make_router(clock, budget_seconds=5, max_attempts=2), [busy.url])
        with pytest.raises(UpstreamError) as raised:
            await backend.complete(BODY)
        # waited the 2 s it asked for (on the injected clock), then tried once more
        assert clock.slept == [2.0] and busy.hits == 2
        assert raised.value.status_code == 429 and raised.value.headers["Retry-After"] == "2"
        busy.retry_after = "30"  # longer than the budget: passed on to the client at once
        clock.now += 60
        with pytest.raises(UpstreamError) as raised:
            await backend.complete(BODY)
        assert busy.hits == 3 and raised.value.headers["Retry-After"] == "30"


async def test_429_moves_to_another_endpoint_without_waiting() -> None:
    clock = Clock()
    async with faulty_upstreams(2) as [busy, good]:
        busy.mode, busy.status, busy.retry_after = "status", 429, "10"
        backend = routed(make_router(clock), [busy.url, good.url], weights=[100, 1])
        trace = RouteTrace()
        await backend.complete(BODY, trace=trace)
        assert (busy.hits, good.hits, trace.attempts, clock.slept) == (1, 1, 2, [])
        await backend.complete(BODY)  # the busy one is not asked again during its wait
        assert (busy.hits, good.hits) == (1, 2)


async def test_client_errors_are_never_retried() -> None:
    clock = Clock()
    async with faulty_upstreams(2) as [a, b]:
        for upstream in (a, b):
            upstream.mode, upstream.status = "status", 422
        backend = routed(make_router(clock), [a.url, b.url])
        for status in (400, 413, 422):
            a.status = b.status = status
            with pytest.raises(InvalidRequestError):
                await backend.complete(BODY)
        assert a.hits + b.hits == 3


async def test_failure_mid_stream_is_not_retried() -> None:
    clock = Clock()
    async with faulty_upstreams(2) as [a, b]:
        a.mode = b.mode = "midstream"
        backend = routed(make_router(clock), [a.url, b.url])
        trace = RouteTrace()
        chunks = await backend.open_stream({**BODY, "stream": True}, trace=trace)
        assert (await chunks.__anext__())["choices"][0]["delta"]["content"] == "hi"
        with pytest.raises(UpstreamError):
            await chunks.__anext__()
        assert a.hits + b.hits == 1 and trace.attempts == 1


async def test_budget_caps_attempts_and_the_last_error_is_raised() -> None:
    clock = Clock()
    async with faulty_upstreams(3) as ups:
        for upstream in ups:
            upstream.mode, upstream.status = "status", 500
        backend = routed(make_router(clock, max_attempts=2), [u.url for u in ups])
        trace = RouteTrace()
        with pytest.raises(UpstreamError) as raised:
            await backend.complete(BODY, trace=trace)
        assert sum(u.hits for u in ups) == 2 and trace.attempts == 2
        assert raised.value.code == "upstream_http_500"


async def test_cooled_down_endpoint_gets_no_traffic_until_its_cooldown_ends() -> None:
    clock = Clock()
    async with faulty_upstreams(2) as [sick, good]:
        sick.mode, sick.status = "status", 502
        router = make_router(clock, allowed_fails=3, cooldown_seconds=60)
        backend = routed(router, [sick.url, good.url], weights=[1000, 1])
        for key in ("k1", "k2", "k3"):  # the heavy weight sends each to `sick` first
            await backend.complete(BODY, tenant=key)  # three keys saw it fail
        assert sick.hits == 3
        assert router.cooldowns.until("m", "a") == clock.now + 60
        sick.mode = "ok"
        for _ in range(20):
            await backend.complete(BODY)
        assert sick.hits == 3  # cooled down: no traffic, despite its weight
        clock.now += 61
        await backend.complete(BODY)
        assert sick.hits == 4  # the cooldown is over


async def test_when_every_endpoint_is_cooled_down_one_is_still_tried() -> None:
    clock = Clock()
    async with faulty_upstreams(1) as [only]:
        router = make_router(clock)
        backend = routed(router, [only.url])
        await router.cooldowns.set("m", "a", until=clock.now + 60, reason="test")
        await backend.complete(BODY)
        assert only.hits == 1


async def test_when_every_endpoint_hangs_the_last_attempt_waits_the_read_timeout() -> None:
    """The first-token timeout cuts an attempt only while another endpoint is left; the
    last one is bounded by the read timeout alone."""
    clock = Clock()
    async with faulty_upstreams(2) as ups:
        for upstream in ups:
            upstream.mode = "hang"
        router = make_router(clock, first_token_timeout=0.2, max_attempts=3)
        backend = routed(router, [u.url for u in ups], read_timeout=1)
        trace = RouteTrace()
        with pytest.raises(UpstreamTimeoutError):
            await backend.open_stream({**BODY, "stream": True}, trace=trace)
        assert sum(u.hits for u in ups) == 2 and trace.attempts == 2


async def test_fallback_model_is_tried_after_the_models_own_endpoints() -> None:
    clock = Clock()
    async with faulty_upstreams(2) as [own, spare]:
        own.mode, own.status = "status", 503
        router = make_router(clock)
        pool = HttpPool(Settings())
        POOLS.append(pool)
        own_target = Target(
            router.state("m", "own", weight=1, max_concurrency=None),
            OpenAIBackend(upstream=OpenAIEndpoint(base_url=own.url), pool=pool),
            "m",
            "own",
        )
        spare_target = Target(
            router.state("spare", "s", weight=1, max_concurrency=None),
            OpenAIBackend(upstream=OpenAIEndpoint(base_url=spare.url), pool=pool),
            "spare-model",
            "spare/s",
        )
        backend = RoutedBackend(router=router, tiers=[[own_target], [spare_target]])
        trace = RouteTrace()
        await backend.complete(BODY, trace=trace)
        assert (own.hits, spare.hits, trace.endpoint, trace.attempts) == (1, 1, "spare/s", 2)
        assert spare.bodies[0]["model"] == "spare-model"  # the fallback's own model name


class Recorded:
    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def endpoint_attempt(self, **kwargs: Any) -> None:
        self.calls.append(kwargs)


async def test_each_attempt_is_reported_per_endpoint() -> None:
    clock = Clock()
    metrics = Recorded()
    async with faulty_upstreams(2) as [sick, good]:
        sick.mode, sick.status = "status", 503
        router = make_router(clock)
        router.metrics = metrics
        backend = routed(router, [sick.url, good.url], weights=[1000, 1])
        await drain(await backend.open_stream({**BODY, "stream": True}))
    failed, served = metrics.calls
    assert failed == {"model": "m", "endpoint": "a", "ok": False, "failover": True, "ttft_ms": None}
    assert served["endpoint"] == "b" and served["ok"] and not served["failover"]
    assert served["ttft_ms"] is not None and served["ttft_ms"] > 0


async def test_telemetry_writes_one_emf_document_per_attempt(
    capsys: pytest.CaptureFixture[str],
) -> None:
    import json

    from gateway.observability import Telemetry

    Telemetry(namespace="Test").endpoint_attempt(
        model="m", endpoint="a", ok=False, failover=True, ttft_ms=None
    )
    [line] = [json.loads(x) for x in capsys.readouterr().out.splitlines() if "_aws" in x]
    [directive] = line["_aws"]["CloudWatchMetrics"]
    assert ["model", "endpoint", "service"] in directive["Dimensions"]
    assert (line["model"], line["endpoint"]) == ("m", "a")
    assert {m["Name"] for m in directive["Metrics"]} == {
        "EndpointRequests", "EndpointErrors", "EndpointFailovers"
    }  # fmt: skip


async def test_sagemaker_throttling_and_model_errors_fail_over_to_an_http_replica() -> None:
    """A SageMaker endpoint (a local server writing the runtime API's real error shapes,
    read by a real boto3 client) that throttles or whose container fails: the request
    moves to the model's HTTP replica."""
    import boto3
    from botocore.config import Config
    from gateway.backends.sagemaker import SageMakerBackend
    from gateway.models.registry import SageMakerEndpoint

    from tests.support.eventstream import aws_error, model_error, sagemaker_stub

    clock = Clock()
    with sagemaker_stub() as stub:
        stub.add_invocation("throttled", aws_error(400, "ThrottlingException", {"message": "x"}))
        stub.add_invocation("broken", model_error(503, {"error": "cuda"}))
        client = boto3.client(
            "sagemaker-runtime", endpoint_url=stub.url, region_name="us-east-1",
            aws_access_key_id="x", aws_secret_access_key="x",
            config=Config(retries={"mode": "standard", "total_max_attempts": 1}),
        )  # fmt: skip
        async with faulty_upstreams(1) as [replica]:
            for name in ("throttled", "broken"):
                router = make_router(clock)
                pool = HttpPool(Settings())
                POOLS.append(pool)
                sagemaker = SageMakerBackend(
                    upstream=SageMakerEndpoint(endpoint_name=name), get_client=lambda: client
                )
                http = OpenAIBackend(upstream=OpenAIEndpoint(base_url=replica.url), pool=pool)
                targets = [
                    Target(router.state("m", "sm", weight=1000, max_concurrency=None), sagemaker, "m", "sm"),
                    Target(router.state("m", "http", weight=1, max_concurrency=None), http, "m", "http"),
                ]  # fmt: skip
                trace = RouteTrace()
                body = await RoutedBackend(router=router, tiers=[targets]).complete(
                    BODY, trace=trace
                )
                assert body["choices"][0]["message"]["content"] == "hi"
                assert (trace.endpoint, trace.attempts) == ("http", 2)
        assert len(stub.requests) == 2


async def test_requests_in_flight_are_counted_until_each_stream_ends() -> None:
    clock = Clock()
    async with faulty_upstreams(1) as [upstream]:
        router = make_router(clock)
        backend = routed(router, [upstream.url])
        state = router.state("m", "a", weight=1, max_concurrency=None)
        finished = await backend.open_stream({**BODY, "stream": True})
        closed_early = await backend.open_stream({**BODY, "stream": True})
        assert state.in_flight == 2
        await drain(finished)
        await closed_early.aclose()  # type: ignore[attr-defined]  # the client went away
        assert state.in_flight == 0
        upstream.mode = "midstream"
        broken = await backend.open_stream({**BODY, "stream": True})
        with pytest.raises(UpstreamError):
            await drain(broken)
        assert state.in_flight == 0 and len(state.failures) == 1


async def test_the_relay_still_sees_pending_and_raw_through_the_routed_stream() -> None:
    """backends/chunks.py's hints (read with getattr by chat/stream.py) pass through."""
    clock = Clock()
    async with faulty_upstreams(1) as [upstream]:
        backend = routed(make_router(clock), [upstream.url])
        chunks: Any = await backend.open_stream({**BODY, "stream": True})
        first = await chunks.__anext__()
        assert first["choices"][0]["delta"]["content"] == "hi"
        assert chunks.raw is not None and b'"hi"' in chunks.raw
        assert isinstance(chunks.pending, int)
        await drain(chunks)


async def test_a_retry_after_is_waited_for_only_by_the_request_it_was_sent_to() -> None:
    """Another request skips the endpoint while others are ready, but never sleeps for a
    Retry-After it was not sent (found when the whole suite slowed down behind one)."""
    clock = Clock()
    async with faulty_upstreams(1) as [busy]:
        busy.mode, busy.status, busy.retry_after = "status", 429, "3"
        backend = routed(make_router(clock, max_attempts=1), [busy.url])
        with pytest.raises(UpstreamError):
            await backend.complete(BODY)
        busy.mode = "ok"
        await backend.complete(BODY)  # tried at once, not after 3 s
        assert clock.slept == [] and busy.hits == 2


# --- Cooldowns that cannot be weaponized (issue 27, item 3) ---------------------------


async def stream_served_by(backend: RoutedBackend, *, tenant: str | None = None) -> str | None:
    trace = RouteTrace()
    chunks = await drain(
        await backend.open_stream({**BODY, "stream": True}, trace=trace, tenant=tenant)
    )
    assert chunks[0]["choices"][0]["delta"]["content"] == "hi"
    return trace.endpoint


async def test_one_callers_500s_do_not_stop_a_paused_replicas_peer_from_serving() -> None:
    """Three requests from one caller make both replicas answer 500 (a request can make
    its own upstream fail). Then one replica pauses: every later request is still served,
    by its peer. Before: both replicas were cooled down, the router made one attempt and
    never tried the other, and the requests that drew the paused one failed."""
    clock = Clock()
    async with faulty_upstreams(2) as [paused, peer]:
        paused.mode = peer.mode = "status"
        paused.status = peer.status = 500
        router = make_router(clock)
        backend = routed(router, [paused.url, peer.url])
        for _ in range(3):
            with pytest.raises(UpstreamError):
                await backend.complete(BODY)
        assert (paused.hits, peer.hits) == (3, 3)
        assert router.cooldowns.until("m", "a") == router.cooldowns.until("m", "b") == 0
        paused.mode, peer.mode = "hang", "ok"
        served = [await stream_served_by(backend) for _ in range(8)]
        assert served == ["b"] * 8


async def test_a_429_retry_after_of_an_hour_is_honoured_for_the_cooldown_at_most() -> None:
    """One request answered 429 with Retry-After: 3600 by both replicas: the client gets
    the 429 and its header, but the replicas are skipped for at most the cooldown period,
    and never refused while they are all the model has: a paused replica's peer serves.
    Before: both were benched for an hour and most requests failed."""
    clock = Clock()
    async with faulty_upstreams(2) as [paused, peer]:
        paused.mode = peer.mode = "status"
        paused.status = peer.status = 429
        paused.retry_after = peer.retry_after = "3600"
        router = make_router(clock, cooldown_seconds=60)
        backend = routed(router, [paused.url, peer.url])
        with pytest.raises(UpstreamError) as raised:
            await backend.complete(BODY)
        assert raised.value.status_code == 429 and raised.value.headers["Retry-After"] == "3600"
        for name in "ab":
            state = router.state("m", name, weight=1, max_concurrency=None)
            assert state.not_before == clock.now + 60  # not an hour
            assert router.cooldowns.backoff_until("m", name) == clock.now + 60
            assert not state.failures  # backpressure is not a fault
        paused.mode, peer.mode = "hang", "ok"
        served = [await stream_served_by(backend) for _ in range(8)]
        assert served == ["b"] * 8
        assert clock.slept == []  # nobody sat out the Retry-After


async def test_when_every_endpoint_is_cooled_down_they_are_all_tried_with_failover() -> None:
    """Envoy's panic mode: with every endpoint cooled down (the probe, an outage that has
    passed) a request still fails over between them. Before: one attempt, then a 504."""
    clock = Clock()
    async with faulty_upstreams(2) as [paused, peer]:
        router = make_router(clock)
        backend = routed(router, [paused.url, peer.url])
        for name in "ab":
            await router.cooldowns.set("m", name, until=clock.now + 60, reason="probe")
        paused.mode = "hang"
        served = [await stream_served_by(backend) for _ in range(8)]
        assert served == ["b"] * 8
        assert paused.hits >= 1  # it was drawn, and the request moved on


async def test_failures_cool_an_endpoint_down_only_when_distinct_keys_saw_them() -> None:
    clock = Clock()
    async with faulty_upstreams(2) as [sick, good]:
        sick.mode, sick.status = "status", 500
        router = make_router(clock, allowed_fails=3)
        backend = routed(router, [sick.url, good.url], weights=[1000, 1])
        for _ in range(5):  # one key, however often
            await backend.complete(BODY, tenant="key-1")
        await backend.complete(BODY)  # and callers not named count as one more key
        assert router.cooldowns.until("m", "a") == 0 and sick.hits == 6
        await backend.complete(BODY, tenant="key-2")
        assert router.cooldowns.until("m", "a") == clock.now + 60  # three keys saw it


async def test_a_refused_connection_needs_no_second_key() -> None:
    """A connection that cannot be made is not something a request can cause."""
    clock = Clock()
    async with faulty_upstreams(1) as [good]:
        router = make_router(clock, allowed_fails=3)
        backend = routed(router, [refused_url(), good.url], weights=[1000, 1])
        for _ in range(3):
            await backend.complete(BODY, tenant="key-1")
        assert router.cooldowns.until("m", "a") == clock.now + 60


async def test_a_stream_failing_midway_counts_against_its_key() -> None:
    clock = Clock()
    async with faulty_upstreams(1) as [broken]:
        broken.mode = "midstream"
        router = make_router(clock, allowed_fails=2)
        backend = routed(router, [broken.url])
        for tenant in ("key-1", "key-1", "key-2"):
            chunks = await backend.open_stream({**BODY, "stream": True}, tenant=tenant)
            with pytest.raises(UpstreamError):
                await drain(chunks)
        assert router.cooldowns.until("m", "a") == clock.now + 60


async def test_the_policy_takes_affinity_and_load_sampling_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    default = RoutingPolicy.from_settings(Settings())
    assert (default.affinity, default.load_sample_seconds) == (True, 1.0)
    monkeypatch.setenv("ROUTING_AFFINITY", "false")
    monkeypatch.setenv("ENDPOINT_LOAD_SAMPLE_SECONDS", "0")
    policy = RoutingPolicy.from_settings(Settings())
    assert (policy.affinity, policy.load_sample_seconds) == (False, 0.0)
