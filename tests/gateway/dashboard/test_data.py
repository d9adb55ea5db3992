"""The dashboard's data without a browser or a table: how series are named."""

from __future__ import annotations

from datetime import date
from typing import Any

from gateway.dashboard.data import COUNTERS, NO_MODEL_LABEL, Cell, Report, report_json


def _cell(day: str, model: str, requests: int) -> Cell:
    counts = {name: 0 for name in COUNTERS}
    rejected = model == "-"
    counts.update(requests=requests, errors=requests if rejected else 0)
    counts["total_tokens"] = 0 if rejected else 20 * requests
    return Cell(day=day, key_id="key_1", model=model, counts=counts)


def test_requests_rejected_before_a_model_are_named_so() -> None:
    """The usage record's model "-" (no model resolved: rejected) is not shown as a model
    called "-"; the CSV keeps the record's own value."""
    report = Report(
        start=date(2026, 11, 1),
        end=date(2026, 11, 30),
        keys=[],
        cells=[_cell("2026-11-20", "-", 2), _cell("2026-11-20", "qwen3", 5)],
    )
    limits: Any = None  # no keys: no limits read
    data = report_json(report, limits, split="model", today=date(2026, 11, 30))
    assert [s["name"] for s in data["series"]] == ["qwen3", NO_MODEL_LABEL]
    assert {t["name"] for t in data["top_models"]} == {"qwen3", NO_MODEL_LABEL}
    assert "-" not in {s["name"] for s in data["series"]}
