"""CloudWatch (EMF) counts of the guard's blocks, per guarded model and category. Like
gateway.observability.Telemetry: nothing is built when metrics are disabled."""

from __future__ import annotations

from collections.abc import Sequence

from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit

from gateway.settings import Settings

SERVICE = "gateway"


class BlockMetrics:
    def __init__(self, namespace: str = "GpuGateway", *, enabled: bool = True) -> None:
        self._namespace = namespace
        self._enabled = enabled

    @classmethod
    def from_settings(cls, settings: Settings) -> BlockMetrics:
        return cls(
            settings.powertools_metrics_namespace,
            enabled=not settings.powertools_metrics_disabled,
        )

    def blocked(self, *, model: str, categories: Sequence[str]) -> None:
        """One `GuardBlocks` count per blocking category."""
        if not self._enabled:
            return
        for category in categories:
            metrics = EphemeralMetrics(namespace=self._namespace, service=SERVICE)
            metrics.add_dimension(name="model", value=model)
            metrics.add_dimension(name="category", value=category)
            metrics.add_metric(name="GuardBlocks", unit=MetricUnit.Count, value=1)
            metrics.flush_metrics()
