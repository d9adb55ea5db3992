"""Lambda SnapStart: what to do before the snapshot and after each restore.

Before the snapshot, build what the first request would otherwise build (the DynamoDB
client; for a function that forwards, the upstream backend's modules), so that restored
instances start with it. After a restore, drop pooled connections: a snapshot's sockets
are dead (and shared by every instance restored from it).

Two ways in, one per function:

- ApiFunction (the Python managed runtime runs Mangum): the runtime's hooks, from the
  Snapshot Restore for Python library (`snapshot_restore_py`, part of the python3.12
  managed runtime, absent elsewhere, so registering is a no-op outside Lambda).
- StreamFunction (the Lambda Web Adapter runs uvicorn in its own process, which the
  runtime's hooks never reach): the adapter's HTTP hooks. It POSTs to
  AWS_LWA_SNAPSTART_BEFORE_CHECKPOINT_PATH and AWS_LWA_SNAPSTART_AFTER_RESTORE_PATH on
  the app; the routes exist only when those variables are set (template.yaml sets them on
  StreamFunction when EnableSnapStart=true; API Gateway routes no other path to it).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from fastapi import FastAPI
from fastapi.responses import Response

if TYPE_CHECKING:
    from gateway.backends.openai_http import HttpPool
    from gateway.resources import Resources
    from gateway.settings import Settings

logger = logging.getLogger(__name__)


def warm_up(resources: Resources, *, forwards: bool) -> None:
    """Build now what the first request would build: the DynamoDB client (no I/O) and,
    for a function that forwards, the upstream backend's modules (aiohttp)."""
    resources.aws.dynamodb  # noqa: B018 - builds the client
    if forwards:
        import gateway.backends.openai_http  # noqa: F401


def before_snapshot(resources: Resources, *, forwards: bool) -> None:
    warm_up(resources, forwards=forwards)
    logger.info("snapstart: ready for the snapshot")


def after_restore(resources: Resources) -> HttpPool | None:
    """Drop pooled connections; returns the replaced upstream pool, if any, to close. (Under
    the managed runtime there is none: init never forwards, so no pool is in the snapshot.)"""
    stale = resources.reset_connections()
    logger.info("snapstart: restored; pooled connections dropped")
    return stale


def register_runtime_hooks(resources: Resources) -> bool:
    """Register the managed runtime's hooks; False where the library is absent."""
    try:
        from snapshot_restore_py import (  # type: ignore[import-not-found, unused-ignore]
            register_after_restore,
            register_before_snapshot,
        )
    except ImportError:
        return False
    register_before_snapshot(before_snapshot, resources, forwards=False)
    register_after_restore(after_restore, resources)
    return True


def install_adapter_hooks(app: FastAPI, settings: Settings, resources: Resources) -> None:
    """The Web Adapter's SnapStart hooks as routes, where its variables name them."""

    async def on_before_checkpoint() -> Response:
        before_snapshot(resources, forwards=True)
        return Response(status_code=204)

    async def on_after_restore() -> Response:
        stale = after_restore(resources)
        if stale is not None:
            await stale.close()
        await resources.usage.close()  # the usage writer's session; remade on next use
        return Response(status_code=204)

    for path, endpoint in (
        (settings.aws_lwa_snapstart_before_checkpoint_path, on_before_checkpoint),
        (settings.aws_lwa_snapstart_after_restore_path, on_after_restore),
    ):
        if path:
            app.add_api_route(path, endpoint, methods=["POST"], include_in_schema=False)
