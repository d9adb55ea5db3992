"""Logs, metrics (telemetry.py) and X-Ray traces (tracing.py), with Powertools for AWS
Lambda. None of them ever carries an API key or any prompt or completion text."""

from gateway.observability.telemetry import SERVICE, Telemetry, configure_logging
from gateway.observability.tracing import TraceHeaderMiddleware, Tracing, tracing_wanted

__all__ = [
    "SERVICE",
    "Telemetry",
    "TraceHeaderMiddleware",
    "Tracing",
    "configure_logging",
    "tracing_wanted",
]
