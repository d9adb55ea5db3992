"""Each endpoint's load from its /metrics (backends/load.py), against gpusim's page (made
with prometheus_client as vLLM makes it) and servers that have none."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest
from gateway.backends.health import LOAD_FRESH_SECONDS, EndpointState
from gateway.backends.load import LoadSampler, parse_load
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from tests.support.servers import serve_asgi

OLD_VLLM = """\
# HELP vllm:num_requests_running Number of requests currently running on GPU.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{model_name="m"} 3.0
# HELP vllm:num_requests_waiting Number of requests waiting to be processed.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{model_name="m"} 2.0
vllm:num_requests_waiting{model_name="other"} 9.0
# HELP vllm:gpu_cache_usage_perc GPU KV-cache usage. 1 means 100 percent usage.
# TYPE vllm:gpu_cache_usage_perc gauge
vllm:gpu_cache_usage_perc{model_name="m"} 0.5
"""


def test_older_servers_names_and_other_models_samples() -> None:
    load = parse_load(OLD_VLLM, at=1.0, model="m")
    assert load is not None
    assert (load.running, load.waiting, load.kv_usage) == (3.0, 2.0, 0.5)


def test_a_page_without_vllm_gauges_has_no_load() -> None:
    assert parse_load("# TYPE up gauge\nup 1\n", at=0.0) is None


def test_malformed_text_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        parse_load("vllm:num_requests_running{model_name=} what\n", at=0.0)


def test_the_sampler_reads_a_busy_gpusim_replica(tokenizers_dir: Path) -> None:
    from gpusim import SimConfig, create_app

    # One sequence at a time, each holding the batch for a minute: of three requests, one
    # runs and two wait, until they are cancelled.
    config = SimConfig(
        tokenizers_dir=tokenizers_dir, models=("qwen3",), max_num_seqs=1, ttft_ms=60_000
    )
    with serve_asgi(create_app(config)) as url:
        state = EndpointState("qwen3", "r0", 1.0)
        sampler = LoadSampler(interval=0, clock=lambda: 100.0)
        sampler.watch(f"{url}/metrics", "qwen3", state)
        asyncio.run(_busy(url, sampler, state))
    assert state.load is not None
    assert (state.load.running, state.load.waiting, state.load.at) == (1.0, 2.0, 100.0)
    assert 0 < state.load.kv_usage < 1
    assert state.queue(100.0) == 3.0
    assert state.queue(100.0 + LOAD_FRESH_SECONDS + 1) == 0.0  # stale: this instance's own


async def _busy(url: str, sampler: LoadSampler, state: EndpointState) -> None:
    body = {"model": "qwen3", "messages": [{"role": "user", "content": "Hi"}]}
    async with aiohttp.ClientSession() as session:
        posts = [
            asyncio.create_task(session.post(f"{url}/v1/chat/completions", json=body))
            for _ in range(3)
        ]
        try:
            for _ in range(200):  # until the replica has all three (a few ms; 10 s at most)
                await sampler.sample_once()
                if state.load is not None and state.load.running + state.load.waiting == 3:
                    break
                await asyncio.sleep(0.05)
        finally:
            for post in posts:
                post.cancel()
            await asyncio.gather(*posts, return_exceptions=True)
            await sampler.close()


def test_a_server_without_metrics_leaves_the_endpoint_to_p2c() -> None:
    async def missing(request: object) -> PlainTextResponse:
        return PlainTextResponse("not found", status_code=404)

    app = Starlette(routes=[Route("/metrics", missing)])
    with serve_asgi(app) as url:
        state = EndpointState("m", "e", 1.0, in_flight=2)
        sampler = LoadSampler(interval=0)
        sampler.watch(f"{url}/metrics", "m", state)
        asyncio.run(_sample(sampler))
    assert state.load is None
    assert state.queue(0.0) == 2.0


async def _sample(sampler: LoadSampler) -> None:
    try:
        await sampler.sample_once()
    finally:
        await sampler.close()
