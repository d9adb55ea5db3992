"""The scheduled health probe (EndpointProbeFunction, every minute): asks each configured
OpenAI-compatible endpoint for `/health` (vLLM, TGI, SGLang, llama.cpp), or `/v1/models`
where the server has no `/health`, and each SageMaker endpoint for its status
(DescribeEndpoint: serving while InService or being updated), and sets or clears its shared
cooldown. Items are written only when the state changes.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import aiohttp
from botocore.exceptions import BotoCoreError, ClientError

from gateway.aws import AwsClients
from gateway.backends.cooldowns import CooldownStore
from gateway.models.registry import ModelConfig, ModelRegistry, OpenAIEndpoint, SageMakerEndpoint
from gateway.settings import Settings

logger = logging.getLogger(__name__)

PROBE_TIMEOUT_SECONDS = 5.0
_NO_ROUTE = (404, 405)
# SageMaker endpoint statuses in which it serves invocations (an update keeps the old
# variant serving until the new one is in service).
SERVING = frozenset({"InService", "Updating", "SystemUpdating", "RollingBack"})
Describe = Callable[..., dict[str, Any]]


@dataclass(frozen=True)
class ProbeResult:
    model: str
    endpoint: str
    # None: not probed (a SageMaker endpoint, when no DescribeEndpoint client is given).
    healthy: bool | None
    detail: str
    # "cooled", "cleared" or None (nothing written).
    change: str | None = None


async def _get(session: aiohttp.ClientSession, url: str, headers: dict[str, str]) -> int:
    async with session.get(url, headers=headers, allow_redirects=False) as response:
        return response.status


async def check(session: aiohttp.ClientSession, upstream: OpenAIEndpoint) -> tuple[bool, str]:
    """(healthy, what was seen): `/health` answers 200, or it does not exist and
    `/v1/models` answers 200."""
    headers = dict(upstream.headers)
    api_key = upstream.api_key()
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    root = upstream.base_url.rstrip("/").removesuffix("/v1")
    try:
        status = await _get(session, root + "/health", headers)
        if status in _NO_ROUTE:
            status = await _get(session, upstream.url_for("/models"), headers)
            return status == 200, f"/v1/models {status}"
        return status == 200, f"/health {status}"
    except (aiohttp.ClientError, TimeoutError) as exc:
        return False, f"unreachable ({type(exc).__name__})"


def check_sagemaker(describe: Describe, upstream: SageMakerEndpoint) -> tuple[bool, str]:
    """(healthy, what was seen): the endpoint's status is one that serves."""
    try:
        status = str(describe(EndpointName=upstream.endpoint_name).get("EndpointStatus"))
    except (ClientError, BotoCoreError) as exc:
        code = exc.response.get("Error", {}).get("Code") if isinstance(exc, ClientError) else None
        return False, f"DescribeEndpoint failed ({code or type(exc).__name__})"
    return status in SERVING, f"DescribeEndpoint {status}"


async def probe_models(
    models: Iterable[ModelConfig],
    *,
    seconds: float = PROBE_TIMEOUT_SECONDS,
    describe: Describe | None = None,
) -> list[ProbeResult]:
    """Every endpoint of every model, probed concurrently; SageMaker ones through
    `describe` (a SageMaker client's describe_endpoint), in worker threads."""
    pairs = [(m.id, e) for m in models for e in m.endpoints]
    client_timeout = aiohttp.ClientTimeout(total=seconds)
    async with aiohttp.ClientSession(timeout=client_timeout) as session:

        async def one(model: str, upstream: Any) -> ProbeResult:
            if isinstance(upstream, OpenAIEndpoint):
                healthy, detail = await check(session, upstream)
            elif describe is None:
                return ProbeResult(model, upstream.label, None, "not probed (SageMaker)")
            else:
                healthy, detail = await asyncio.to_thread(check_sagemaker, describe, upstream)
            return ProbeResult(model, upstream.label, healthy, detail)

        return list(await asyncio.gather(*(one(m, e) for m, e in pairs)))


def apply(
    results: list[ProbeResult],
    *,
    store: CooldownStore,
    cooldown_seconds: float,
    clock: Callable[[], float] = time.time,
) -> list[ProbeResult]:
    """Cool down the unhealthy endpoints that are not yet, clear the healthy ones that
    are; the results, each with the change written (if any)."""
    now = clock()
    known = {model: store.read(model=model) for model in {r.model for r in results}}
    applied = []
    for result in results:
        current = known[result.model].get(result.endpoint)
        active = current is not None and current.active(now)
        change, until, reason = None, 0.0, "probe: healthy"
        if result.healthy is True and active:
            change = "cleared"
        elif result.healthy is False and not active:
            change, until = "cooled", now + cooldown_seconds
            reason = f"probe: {result.detail}"
        if change is not None:
            store.put(
                model=result.model, endpoint=result.endpoint, until=until, reason=reason, now=now
            )
        applied.append(dataclasses.replace(result, change=change))
    return applied


def run_probe(settings: Settings, aws: AwsClients) -> list[ProbeResult]:
    registry = ModelRegistry.from_settings(settings, read_ssm_parameter=aws.read_ssm_parameter)
    describe = aws.sagemaker.describe_endpoint if _has_sagemaker(registry) else None
    results = asyncio.run(probe_models(registry, describe=describe))
    store = CooldownStore(client=aws.dynamodb, table=settings.usage_table)
    return apply(results, store=store, cooldown_seconds=settings.endpoint_cooldown_seconds)


def _has_sagemaker(registry: ModelRegistry) -> bool:
    return any(isinstance(e, SageMakerEndpoint) for m in registry for e in m.endpoints)
