"""Read the usage rollups: one Query on a partition and a sort-key range, never a Scan.

Rollup items (docs/USAGE.md; keys in layout.py) hold counters `requests`,
`prompt_tokens`, `completion_tokens`, `total_tokens`, `errors`, `rate_limited`, added once
per request id by the aggregator (usage/aggregate.py) a few seconds after the request:
rollups lag the raw records by that much. They have no TTL, so every range here reads one
small item per day (per model or route for the per-model and per-route kinds), however busy
the key was.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, fields
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

from gateway import layout
from gateway.aws import items
from gateway.errors import InvalidRequestError
from gateway.keys.apikey import ApiKey
from gateway.limits import LimitStore

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

GROUP_BY = ("day", "model", "route")
MAX_RANGE_DAYS = 366
# Said with every report: rollups are updated off the request path.
ROLLUPS_NOTE = (
    "Totals come from daily rollups that the usage aggregator updates a few seconds after "
    "each request, so the latest requests may be missing for a few seconds. The month's "
    "used_tokens also holds reservations of requests in flight or not yet aggregated."
)


@dataclass(frozen=True, kw_only=True)
class Totals:
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    errors: int = 0
    # Refusals by the key's limits (also counted in `errors`); 0 on rollups written before
    # the counter existed.
    rate_limited: int = 0
    # Prompt tokens the upstream found in its prefix cache (0 in rollups from before).
    cached_tokens: int = 0

    def __add__(self, other: Totals) -> Totals:
        return Totals(**{f.name: getattr(self, f.name) + getattr(other, f.name) for f in _FIELDS})

    def to_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in _FIELDS}

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> Totals:
        return cls(**{f.name: layout.number(item, f.name) for f in _FIELDS})

    @classmethod
    def sum(cls, items: Iterable[Totals]) -> Totals:
        total = cls()
        for item in items:
            total = total + item
        return total


_FIELDS = fields(Totals)


@dataclass(frozen=True, kw_only=True)
class DayTotals:
    date: str  # YYYY-MM-DD (UTC)
    totals: Totals

    def to_dict(self) -> dict[str, Any]:
        return {"date": self.date, **self.totals.to_dict()}


@dataclass(frozen=True, kw_only=True)
class ModelTotals:
    model: str
    totals: Totals

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, **self.totals.to_dict()}


@dataclass(frozen=True, kw_only=True)
class RouteTotals:
    route: str  # chat, completions, embeddings
    totals: Totals

    def to_dict(self) -> dict[str, Any]:
        return {"route": self.route, **self.totals.to_dict()}


def utc_today() -> date:
    return datetime.now(UTC).date()


def month_start(day: date) -> date:
    return day.replace(day=1)


def month_end(day: date) -> date:
    following = date(day.year + 1, 1, 1) if day.month == 12 else date(day.year, day.month + 1, 1)
    return date.fromordinal(following.toordinal() - 1)


class UsageQuery:
    """Rollup reads. `start`/`end` are UTC days, both inclusive; None leaves that side open."""

    def __init__(self, *, client: DynamoDBClient, table: str) -> None:
        self._client = client
        self._table = table

    def key_days(
        self, *, key_id: str, start: date | None = None, end: date | None = None
    ) -> list[DayTotals]:
        """The key's daily totals, oldest first (days without requests are absent)."""
        return self._days(layout.key_pk(key_id), start, end)

    def model_days(
        self, *, model: str, start: date | None = None, end: date | None = None
    ) -> list[DayTotals]:
        """One model's daily totals over every key, oldest first."""
        return self._days(layout.model_pk(model), start, end)

    def key_models(
        self, *, key_id: str, start: date | None = None, end: date | None = None
    ) -> list[ModelTotals]:
        """The key's totals per model over the range, by model name."""
        by_model: dict[str, Totals] = {}
        for item in self._items(layout.key_pk(key_id), layout.KEY_MODEL_DAY, start, end):
            model = layout.after_day(item["sk"]["S"], layout.KEY_MODEL_DAY)
            by_model[model] = by_model.get(model, Totals()) + Totals.from_item(item)
        return [ModelTotals(model=m, totals=t) for m, t in sorted(by_model.items())]

    def key_routes(
        self, *, key_id: str, start: date | None = None, end: date | None = None
    ) -> list[RouteTotals]:
        """The key's totals per API route over the range, by route name."""
        by_route: dict[str, Totals] = {}
        for item in self._items(layout.key_pk(key_id), layout.KEY_ROUTE_DAY, start, end):
            route = layout.after_day(item["sk"]["S"], layout.KEY_ROUTE_DAY)
            by_route[route] = by_route.get(route, Totals()) + Totals.from_item(item)
        return [RouteTotals(route=r, totals=t) for r, t in sorted(by_route.items())]

    def key_grouped(
        self, *, key_id: str, group_by: str, start: date | None = None, end: date | None = None
    ) -> list[DayTotals] | list[ModelTotals] | list[RouteTotals]:
        """The key's totals per day, model or route (`group_by`, one of GROUP_BY)."""
        if group_by == "day":
            return self.key_days(key_id=key_id, start=start, end=end)
        if group_by == "model":
            return self.key_models(key_id=key_id, start=start, end=end)
        return self.key_routes(key_id=key_id, start=start, end=end)

    def key_month(self, *, key_id: str, day: date | None = None) -> Totals:
        """The key's totals for the UTC month holding `day` (default: today)."""
        day = day or utc_today()
        return Totals.sum(
            d.totals
            for d in self.key_days(key_id=key_id, start=month_start(day), end=month_end(day))
        )

    def _days(self, pk: str, start: date | None, end: date | None) -> list[DayTotals]:
        return [
            DayTotals(date=item["sk"]["S"][len(layout.DAY) :], totals=Totals.from_item(item))
            for item in self._items(pk, layout.DAY, start, end)
        ]

    def _items(
        self, pk: str, prefix: str, start: date | None, end: date | None
    ) -> Iterator[dict[str, Any]]:
        low, high = layout.days_between(prefix, start, end)
        yield from items(
            self._client,
            "query",
            TableName=self._table,
            KeyConditionExpression="pk = :pk AND sk BETWEEN :lo AND :hi",
            ExpressionAttributeValues={
                ":pk": {"S": pk},
                ":lo": {"S": low},
                ":hi": {"S": high},
            },
        )


def parse_day(value: str | None, *, param: str) -> date | None:
    """A YYYY-MM-DD query parameter (None if absent); InvalidRequestError otherwise."""
    if value is None:
        return None
    try:
        if len(value) != 10:
            raise ValueError(value)
        return date.fromisoformat(value)
    except ValueError:
        raise InvalidRequestError(
            f"Invalid value for '{param}': expected a date as YYYY-MM-DD, got {value!r}.",
            param=param,
        ) from None


def usage_report(
    query: UsageQuery,
    limits: LimitStore,
    *,
    key: ApiKey,
    start: str | None = None,
    end: str | None = None,
    group_by: str | None = None,
    today: date | None = None,
) -> dict[str, Any]:
    """The body of `GET /v1/usage` for this key: its own rollups only.

    `end` defaults to today (UTC), `start` to the first day of `end`'s month (this month
    when neither is given). The range holds at most MAX_RANGE_DAYS days.
    """
    today = today or utc_today()
    grouping = "day" if group_by is None else group_by
    if grouping not in GROUP_BY:
        raise InvalidRequestError(
            f"Invalid value for 'group_by': expected one of {', '.join(GROUP_BY)}, "
            f"got {group_by!r}.",
            param="group_by",
        )
    first, last = report_range(start, end, today=today)
    rows = query.key_grouped(key_id=key.key_id, group_by=grouping, start=first, end=last)
    month = month_usage(key, limits, today=today)
    return {
        "object": "usage",
        "key_id": key.key_id,
        "start": first.isoformat(),
        "end": last.isoformat(),
        "group_by": grouping,
        "data": [row.to_dict() for row in rows],
        "totals": Totals.sum(row.totals for row in rows).to_dict(),
        "limits": {"rpm": key.rpm, "tpm": key.tpm, "monthly_tokens": key.monthly_tokens},
        "month": month,
        "note": ROLLUPS_NOTE,
    }


def report_range(start: str | None, end: str | None, *, today: date) -> tuple[date, date]:
    """The report's first and last day: `end` defaults to `today`, `start` to the first day
    of `end`'s month; a range that is inverted or over MAX_RANGE_DAYS is a 400."""
    last = parse_day(end, param="end") or today
    first = parse_day(start, param="start") or month_start(last)
    if first > last:
        raise InvalidRequestError(f"'start' ({first}) is after 'end' ({last}).", param="start")
    if (last - first).days + 1 > MAX_RANGE_DAYS:
        raise InvalidRequestError(
            f"The range from 'start' to 'end' covers more than {MAX_RANGE_DAYS} days.",
            param="end",
        )
    return first, last


def month_usage(key: ApiKey, limits: LimitStore, *, today: date | None = None) -> dict[str, Any]:
    """The key's tokens this UTC month as its monthly budget counts them (in-flight
    reservations included), and what is left of the budget (None: no budget)."""
    month = (today or utc_today()).strftime("%Y-%m")
    used = limits.month_tokens(key_id=key.key_id, month=month)
    remaining = None if key.monthly_tokens is None else max(key.monthly_tokens - used, 0)
    return {"month": month, "used_tokens": used, "remaining_tokens": remaining}
