"""Structured logs and CloudWatch metrics (EMF) with Powertools for AWS Lambda.

Logs and metrics carry request ids, key ids, models, statuses, token counts and timings;
never an API key or any prompt or completion text.
"""

from __future__ import annotations

import logging

from aws_lambda_powertools import Logger
from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit

from gateway.settings import Settings
from gateway.usage.records import UsageRecord

SERVICE = "gateway"
logger = logging.getLogger(SERVICE)


def configure_logging(level: str) -> Logger:
    """JSON logs for the `gateway` logger tree (every module logs through a child of it)."""
    return Logger(service=SERVICE, level=level.upper(), logger_handler=None)


class Telemetry:
    """One EMF document per request; EphemeralMetrics keeps no state shared between them.
    With metrics disabled (POWERTOOLS_METRICS_DISABLED) nothing is built; the log lines
    cost nothing below their level."""

    def __init__(self, namespace: str = "GpuGateway", *, metrics: bool = True) -> None:
        self._namespace = namespace
        self._enabled = metrics

    @classmethod
    def from_settings(cls, settings: Settings) -> Telemetry:
        return cls(
            settings.powertools_metrics_namespace, metrics=not settings.powertools_metrics_disabled
        )

    def _metrics(self, **dimensions: str) -> EphemeralMetrics:
        metrics = EphemeralMetrics(namespace=self._namespace, service=SERVICE)
        for name, value in dimensions.items():
            metrics.add_dimension(name=name, value=value)
        return metrics

    def rejected(self, *, error_type: str, status: int, request_id: str | None = None) -> None:
        """A request refused before it reached an upstream (a metered route also records
        it; one refused before its key is known, e.g. a 503 at the key lookup, has only
        this line, found by its x-request-id)."""
        logger.info(
            "request rejected",
            extra={"request_id": request_id, "status": status, "error_type": error_type},
        )
        if not self._enabled:
            return
        metrics = self._metrics(error_type=error_type)
        metrics.add_metric(name="Rejections", unit=MetricUnit.Count, value=1)
        metrics.flush_metrics()

    def completed(self, record: UsageRecord, *, mismatch: bool) -> None:
        self._log_completed(record, mismatch=mismatch)
        if self._enabled:
            self._emit_completed(record, mismatch=mismatch)

    @staticmethod
    def _log_completed(record: UsageRecord, *, mismatch: bool) -> None:
        if not logger.isEnabledFor(logging.INFO):
            if mismatch:
                Telemetry._log_mismatch(record)
            return
        logger.info(
            "request completed",
            extra={
                "request_id": record.request_id,
                "key_id": record.key_id,
                "model": record.model,
                "route": record.route,
                "status": record.status.value,
                "http_status": record.http_status,
                "stream": record.stream,
                "prompt_tokens": record.prompt_tokens,
                "completion_tokens": record.completion_tokens,
                "latency_ms": record.latency_ms,
                "ttft_ms": record.ttft_ms,
                "error": record.error,
            },
        )
        if mismatch:
            Telemetry._log_mismatch(record)

    @staticmethod
    def _log_mismatch(record: UsageRecord) -> None:
        logger.warning(
            "usage mismatch between gateway and upstream",
            extra={
                "request_id": record.request_id,
                "model": record.model,
                "upstream_prompt_tokens": record.upstream_prompt_tokens,
                "gateway_prompt_tokens": record.gateway_prompt_tokens,
                "upstream_completion_tokens": record.upstream_completion_tokens,
                "gateway_completion_tokens": record.gateway_completion_tokens,
            },
        )

    def _emit_completed(self, record: UsageRecord, *, mismatch: bool) -> None:
        metrics = self._metrics(model=record.model)
        metrics.add_metric(name="Requests", unit=MetricUnit.Count, value=1)
        if record.is_error:
            metrics.add_metric(name="Errors", unit=MetricUnit.Count, value=1)
        metrics.add_metric(name="PromptTokens", unit=MetricUnit.Count, value=record.prompt_tokens)
        metrics.add_metric(
            name="CompletionTokens", unit=MetricUnit.Count, value=record.completion_tokens
        )
        if record.latency_ms is not None:
            metrics.add_metric(
                name="Latency", unit=MetricUnit.Milliseconds, value=record.latency_ms
            )
        if record.ttft_ms is not None:
            metrics.add_metric(
                name="TimeToFirstToken", unit=MetricUnit.Milliseconds, value=record.ttft_ms
            )
        if mismatch:
            metrics.add_metric(name="UsageMismatches", unit=MetricUnit.Count, value=1)
        metrics.flush_metrics()
        # Requests per API route (chat, completions, embeddings): a document of its own, so
        # the per-model series keep their dimensions.
        by_route = self._metrics(route=record.route)
        by_route.add_metric(name="Requests", unit=MetricUnit.Count, value=1)
        by_route.flush_metrics()

    def endpoint_attempt(
        self, *, model: str, endpoint: str, ok: bool, failover: bool, ttft_ms: float | None
    ) -> None:
        """One attempt on one of a model's endpoints (gateway/backends/routing.py)."""
        if not self._enabled:
            return
        metrics = self._metrics(model=model, endpoint=endpoint)
        metrics.add_metric(name="EndpointRequests", unit=MetricUnit.Count, value=1)
        if not ok:
            metrics.add_metric(name="EndpointErrors", unit=MetricUnit.Count, value=1)
        if failover:
            metrics.add_metric(name="EndpointFailovers", unit=MetricUnit.Count, value=1)
        if ttft_ms is not None:
            metrics.add_metric(
                name="EndpointTimeToFirstToken", unit=MetricUnit.Milliseconds, value=ttft_ms
            )
        metrics.flush_metrics()
