"""How the aggregator (usage/aggregate.py) cuts a batch of raw records into transactions:
each record's marker, the rollups it adds to, and the limits items its reservation is
settled on (with its admission marker removed), summed per item, at most
MAX_TRANSACT_ITEMS actions a transaction."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from gateway import layout
from gateway.limits.items import marker_attribute, window_attributes
from gateway.usage.guardlines import guard_rollups
from gateway.usage.records import UsageRecord, UsageStatus

MAX_TRANSACT_ITEMS = 100
# `rate_limited`: refusals by a key's limits, also counted in `errors` (the dashboard).
COUNTERS = (
    "requests",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "errors",
    "rate_limited",
    "cached_tokens",
)
ItemKey = tuple[str, str]


def rollup_keys(record: UsageRecord) -> list[ItemKey]:
    """The rollup items a record adds to: key/day, model/day, key/model/day, key/route/day."""
    key, day = layout.key_pk(record.key_id), record.day
    return [
        (key, layout.day_sk(day)),
        (layout.model_pk(record.model), layout.day_sk(day)),
        (key, layout.key_model_day_sk(day, record.model)),
        (key, layout.key_route_day_sk(day, record.route or "chat")),
    ]


def rollups(record: UsageRecord) -> list[tuple[ItemKey, dict[str, int]]]:
    """Every rollup item a record adds to, and what it adds (several entries may name
    one item: their counters add up)."""
    values, items = rollup_values(record), rollup_keys(record)
    return [(item, values) for item in items] + guard_rollups(record, own_items=items)


def rollup_values(record: UsageRecord) -> dict[str, int]:
    return {
        "requests": 1,
        "prompt_tokens": record.prompt_tokens,
        "completion_tokens": record.completion_tokens,
        "total_tokens": record.total_tokens,
        "errors": int(record.is_error),
        "rate_limited": int(record.status is UsageStatus.RATE_LIMITED),
        "cached_tokens": record.cached_tokens or 0,
    }


@dataclass
class Plan:
    """One transaction: its records' markers, then summed rollups and settlements."""

    records: list[UsageRecord] = field(default_factory=list)
    rollups: dict[ItemKey, dict[str, int]] = field(default_factory=dict)
    # Limits items: attribute -> tokens to add (`used - reserved`, summed).
    settles: dict[ItemKey, dict[str, int]] = field(default_factory=dict)
    # Month items: the records' admission markers to remove (confirmed admissions).
    markers: dict[ItemKey, set[str]] = field(default_factory=dict)

    def size(self) -> int:
        return len(self.records) + len(self.rollups) + len(self._limits_items())

    def _limits_items(self) -> set[ItemKey]:
        return set(self.settles) | set(self.markers)

    def new_items(self, record: UsageRecord, current_minute: int) -> int:
        limits = {k for k, _ in _settlements(record, current_minute)}
        marker = _marker(record)
        if marker is not None:
            limits.add(marker[0])
        items = {k for k, _ in rollups(record)}
        return 1 + sum(k not in self.rollups for k in items) + len(limits - self._limits_items())

    def add(self, record: UsageRecord, current_minute: int) -> None:
        self.records.append(record)
        for key, values in rollups(record):
            totals = self.rollups.setdefault(key, dict.fromkeys(COUNTERS, 0))
            for name, value in values.items():
                totals[name] = totals.get(name, 0) + value
        delta = record.billed_tokens - record.reserved_tokens
        for key, attribute in _settlements(record, current_minute):
            deltas = self.settles.setdefault(key, {})
            deltas[attribute] = deltas.get(attribute, 0) + delta
        marker = _marker(record)
        if marker is not None:
            self.markers.setdefault(marker[0], set()).add(marker[1])


def _marker(record: UsageRecord) -> tuple[ItemKey, str] | None:
    """The month item and marker attribute of a confirmed admission, removed with its
    settlement (its instance may have removed it already: removing is idempotent)."""
    if record.reserved_month is None or record.reserved_unconfirmed_ms is not None:
        return None
    month = (layout.key_pk(record.key_id), layout.month_sk(record.reserved_month))
    return month, marker_attribute(record.request_id)


def _settlements(record: UsageRecord, current_minute: int) -> list[tuple[ItemKey, str]]:
    """(item, attribute) pairs holding this record's confirmed reservation
    (limits/store.py). An unconfirmed one is settled apart (Aggregator._refund)."""
    found: list[tuple[ItemKey, str]] = []
    if record.billed_tokens == record.reserved_tokens or record.reserved_unconfirmed_ms is not None:
        return found
    pk = layout.key_pk(record.key_id)
    minute = record.reserved_window_minute
    current = minute is not None and minute >= current_minute  # a past window limits nothing
    if record.reserved_month is not None:
        month = (pk, layout.month_sk(record.reserved_month))
        found.append((month, "tokens"))
        if current and minute is not None:
            found.append((month, window_attributes(minute)[1]))
    elif current and minute is not None:
        found.append(((pk, layout.window_sk(minute)), "tokens"))
    return found


def plan(records: Iterable[UsageRecord], *, current_minute: int) -> list[Plan]:
    """Records in order, cut into transactions of at most MAX_TRANSACT_ITEMS actions."""
    plans: list[Plan] = []
    seen: set[ItemKey] = set()
    current = Plan()
    for record in records:
        if (record.key_id, record.sk) in seen:
            continue  # the same record twice in one batch: a transaction may name it once
        seen.add((record.key_id, record.sk))
        if (
            current.records
            and current.size() + current.new_items(record, current_minute) > MAX_TRANSACT_ITEMS
        ):
            plans.append(current)
            current = Plan()
        current.add(record, current_minute)
    if current.records:
        plans.append(current)
    return plans
