"""What the usage dashboard shows, read from the rollups only.

One Query per key on its key-and-model daily rollups (pk `key#<id>`, sk `mday#<day>#<model>`
between the range's first and last day) gives every figure: per day, per key, per model.
The keys themselves come from the keys table (`KeyStore.list`, as `gateway keys list`),
their budgets from the month counters (`month_usage`). The usage table is never scanned,
and raw records are never read, however busy the keys were.

Rollups count a limit's refusals (`rate_limited`) among `errors` too; rollups written
before that counter existed read it as 0.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from gateway import layout
from gateway.errors import InvalidRequestError
from gateway.keys import ApiKey, KeyStore
from gateway.limits import LimitStore
from gateway.usage.query import MAX_RANGE_DAYS, UsageQuery, month_usage

COUNTERS = (
    "requests", "prompt_tokens", "completion_tokens", "total_tokens", "errors", "rate_limited",
    "cached_tokens",
)  # fmt: skip
SPLITS = ("key", "model")
CSV_COLUMNS = ("date", "key_id", "key_name", "owner", "model", *COUNTERS)
TOP = 10


@dataclass(frozen=True)
class Cell:
    """One key's usage of one model on one day (one `mday#` rollup item)."""

    day: str
    key_id: str
    model: str
    counts: dict[str, int]


class RollupReader(UsageQuery):
    """UsageQuery's ranged Query, keeping every counter of the key-and-model rollups."""

    def key_model_days(self, *, key_id: str, start: date, end: date) -> list[Cell]:
        cells = []
        for item in self._items(layout.key_pk(key_id), layout.KEY_MODEL_DAY, start, end):
            sk = item["sk"]["S"]
            day, model = (
                sk[len(layout.KEY_MODEL_DAY) :][:10],
                layout.after_day(sk, layout.KEY_MODEL_DAY),
            )
            counts = {name: layout.number(item, name) for name in COUNTERS}
            cells.append(Cell(day=day, key_id=key_id, model=model, counts=counts))
        return cells


@dataclass
class Report:
    start: date
    end: date
    keys: list[ApiKey]
    cells: list[Cell] = field(default_factory=list)
    _names: dict[str, str] = field(default_factory=dict, repr=False)

    @property
    def days(self) -> list[str]:
        count = (self.end - self.start).days + 1
        return [(self.start + timedelta(days=i)).isoformat() for i in range(count)]

    def label(self, key_id: str) -> str:
        if len(self._names) != len(self.keys):
            self._names = {k.key_id: k.name for k in self.keys}
        return f"{self._names.get(key_id, '?')} ({key_id})"


def _sum(cells: Iterable[Cell]) -> dict[str, int]:
    total = dict.fromkeys(COUNTERS, 0)
    for cell in cells:
        for name in COUNTERS:
            total[name] += cell.counts[name]
    return total


def parse_range(start: str | None, end: str | None, *, today: date) -> tuple[date, date]:
    """The days asked for (default: the last 30 days to today), at most MAX_RANGE_DAYS."""
    try:
        last = date.fromisoformat(end) if end else today
        first = date.fromisoformat(start) if start else last - timedelta(days=29)
    except ValueError as exc:
        raise InvalidRequestError(f"Dates are YYYY-MM-DD: {exc}.", param="start") from None
    if first > last:
        raise InvalidRequestError(f"'start' ({first}) is after 'end' ({last}).", param="start")
    if (last - first).days + 1 > MAX_RANGE_DAYS:
        raise InvalidRequestError(f"At most {MAX_RANGE_DAYS} days at a time.", param="end")
    return first, last


def read_report(
    reader: RollupReader, keys: KeyStore, *, start: date, end: date, owner: str | None = None
) -> Report:
    report = Report(start=start, end=end, keys=keys.list(owner=owner))
    for key in report.keys:
        report.cells.extend(reader.key_model_days(key_id=key.key_id, start=start, end=end))
    return report


# The usage record's model for a request refused before a model was resolved (an unknown
# or forbidden model, a bad body): shown on the charts and tops under this name.
NO_MODEL = "-"
NO_MODEL_LABEL = "no model (rejected requests)"


def model_label(model: str) -> str:
    return NO_MODEL_LABEL if model == NO_MODEL else model


def _series(report: Report, split: str) -> list[dict[str, Any]]:
    by: dict[str, dict[str, list[Cell]]] = {}
    for cell in report.cells:
        name = report.label(cell.key_id) if split == "key" else model_label(cell.model)
        by.setdefault(name, {}).setdefault(cell.day, []).append(cell)
    series = []
    for name, days in by.items():
        sums = {day: _sum(days.get(day, [])) for day in report.days}
        series.append(
            {
                "name": name,
                "tokens": [sums[d]["total_tokens"] for d in report.days],
                "requests": [sums[d]["requests"] for d in report.days],
                "total": _sum(c for cells in days.values() for c in cells),
            }
        )
    return sorted(series, key=lambda s: (-s["total"]["total_tokens"], s["name"]))


def _top(report: Report, split: str) -> list[dict[str, Any]]:
    return [{"name": s["name"], **s["total"]} for s in _series(report, split)[:TOP]]


def _key_rows(report: Report, limits: LimitStore, today: date) -> list[dict[str, Any]]:
    rows = []
    for key in report.keys:
        month = month_usage(key, limits, today=today)
        rows.append(
            {
                "key_id": key.key_id,
                "name": key.name,
                "owner": key.owner,
                "status": key.status.value,
                "rpm": key.rpm,
                "tpm": key.tpm,
                "monthly_tokens": key.monthly_tokens,
                "month": month["month"],
                "used_tokens": month["used_tokens"],
                "remaining_tokens": month["remaining_tokens"],
            }
        )
    return rows


def report_json(report: Report, limits: LimitStore, *, split: str, today: date) -> dict[str, Any]:
    """The dashboard's data: series for the chart, tops, totals, and each key's limits."""
    return {
        "start": report.start.isoformat(),
        "end": report.end.isoformat(),
        "split": split,
        "days": report.days,
        "series": _series(report, split),
        "totals": _sum(report.cells),
        "top_keys": _top(report, "key"),
        "top_models": _top(report, "model"),
        "keys": _key_rows(report, limits, today),
    }


def report_csv(report: Report, columns: Sequence[str] = CSV_COLUMNS) -> str:
    """One row per day, key and model, oldest first."""
    keys = {k.key_id: k for k in report.keys}
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for cell in sorted(report.cells, key=lambda c: (c.day, c.key_id, c.model)):
        key = keys[cell.key_id]
        writer.writerow(
            {
                "date": cell.day,
                "key_id": cell.key_id,
                "key_name": key.name,
                "owner": key.owner,
                "model": cell.model,
                **cell.counts,
            }
        )
    return out.getvalue()
