"""Entry point of EndpointProbeFunction (an EventBridge schedule): probe every endpoint and
cool down or clear it (gateway/backends/probe.py)."""

from __future__ import annotations

import logging
from typing import Any

from gateway.aws import AwsClients
from gateway.backends.probe import run_probe
from gateway.observability import configure_logging
from gateway.settings import Settings

logger = logging.getLogger(__name__)


def probe_handler(_event: dict[str, Any], _context: Any) -> dict[str, Any]:
    """EventBridge schedule target."""
    settings = Settings()
    configure_logging(settings.log_level)
    results = run_probe(settings, AwsClients())
    for result in results:
        if result.change is not None:
            logger.warning(
                "endpoint state changed by the probe",
                extra={"model": result.model, "endpoint": result.endpoint,
                       "change": result.change, "detail": result.detail},
            )  # fmt: skip
    return {
        "probed": sum(1 for r in results if r.healthy is not None),
        "unhealthy": sum(1 for r in results if r.healthy is False),
        "changes": sum(1 for r in results if r.change is not None),
    }
