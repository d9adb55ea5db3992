"""Telemetry.completed: the per-model EMF document keeps its dimensions, and a second one
counts requests per API route; the log line names the route."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from gateway.observability import Telemetry
from gateway.usage import UsageStatus

from tests.support.records import usage_record


def emf_documents(text: str) -> list[dict[str, Any]]:
    docs = []
    for line in text.splitlines():
        if line.startswith("{") and '"_aws"' in line:
            docs.append(json.loads(line))
    return docs


def test_requests_are_counted_per_route_beside_per_model(
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    telemetry = Telemetry(namespace="Test")
    capsys.readouterr()
    with caplog.at_level(logging.INFO, logger="gateway"):
        telemetry.completed(usage_record(route="embeddings", completion_tokens=0), mismatch=False)
        telemetry.completed(
            usage_record(route="completions", status=UsageStatus.UPSTREAM_ERROR), mismatch=False
        )
    docs = emf_documents(capsys.readouterr().out)
    dimensions = [doc["_aws"]["CloudWatchMetrics"][0]["Dimensions"][0] for doc in docs]
    assert sorted(dimensions) == [
        ["model", "service"], ["model", "service"], ["route", "service"], ["route", "service"],
    ]  # fmt: skip
    by_route = [doc for doc in docs if "route" in doc]
    assert [(doc["route"], doc["Requests"]) for doc in by_route] == [
        ("embeddings", [1.0]),
        ("completions", [1.0]),
    ]
    by_model = [doc for doc in docs if "model" in doc]
    assert all(doc["model"] == "qwen3" and doc["Requests"] == [1.0] for doc in by_model)
    assert by_model[1]["Errors"] == [1.0] and "Errors" not in by_model[0]
    routes = [getattr(r, "route", None) for r in caplog.records if r.message == "request completed"]
    assert routes == ["embeddings", "completions"]


def test_disabled_metrics_build_nothing_and_the_log_line_stays(
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from gateway.observability import telemetry as module
    from gateway.settings import Settings

    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    telemetry = Telemetry.from_settings(Settings())

    def no_metrics(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a metric was built with metrics disabled")

    monkeypatch.setattr(module, "EphemeralMetrics", no_metrics)
    capsys.readouterr()
    with caplog.at_level(logging.INFO, logger="gateway"):
        telemetry.completed(usage_record(), mismatch=True)
        telemetry.rejected(error_type="invalid_request_error", status=400)
    assert emf_documents(capsys.readouterr().out) == []
    messages = [r.message for r in caplog.records]
    assert messages == [
        "request completed",
        "usage mismatch between gateway and upstream",
        "request rejected",
    ]
