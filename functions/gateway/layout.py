"""The usage table's layout in code: every item kind's keys, and item translation.

docs/USAGE.md ("The usage table") is the one description of the schema: which items share
the table, their keys and what they hold (tests/unit/usage/test_layout.py keeps the two in
step). This module is the one place that writes it down as code: every module that reads
or writes the usage table (records, the aggregator, queries, rebuild, limits, endpoint
cooldowns and load samples) builds its keys here and translates items with boto3's
TypeSerializer and TypeDeserializer; paging is boto3's paginator (gateway.aws.pages/items).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

RECORD = "req#"
DAY = "day#"
KEY_MODEL_DAY = "mday#"
KEY_ROUTE_DAY = "rday#"
WINDOW = "win#"
MONTH = "month#"
ENDPOINT = "ep#"
LOAD = "load#"
# Sorts after "#", "-", ":" and every digit: `<prefix><day>~` bounds all of that day.
HIGH = "~"


# --- keys ---------------------------------------------------------------------------


def key_pk(key_id: str) -> str:
    return f"key#{key_id}"


def model_pk(model: str) -> str:
    return f"model#{model}"


def endpoints_pk(model: str) -> str:
    return f"endpoints#{model}"


def iso_ms(dt: datetime) -> str:
    """A record's time as its sort key holds it: ISO 8601 UTC with milliseconds."""
    return dt.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def record_sk(created_at: datetime, request_id: str) -> str:
    return record_sk_at(iso_ms(created_at), request_id)


def record_sk_at(created_at: str, request_id: str) -> str:
    """record_sk of a time already written as iso_ms writes it."""
    return f"{RECORD}{created_at}#{request_id}"


def records_between(since: datetime | None, until: datetime | None) -> tuple[str, str]:
    """The sort-key bounds (BETWEEN) of a key's raw records in [since, until]."""
    low = RECORD + (iso_ms(since) if since else "")
    return low, RECORD + (iso_ms(until) if until else "") + HIGH


def is_record(sk: str) -> bool:
    return sk.startswith(RECORD)


def day_sk(day: str) -> str:
    return f"{DAY}{day}"


def key_model_day_sk(day: str, model: str) -> str:
    return f"{KEY_MODEL_DAY}{day}#{model}"


def key_route_day_sk(day: str, route: str) -> str:
    return f"{KEY_ROUTE_DAY}{day}#{route}"


def days_between(prefix: str, start: date | None, end: date | None) -> tuple[str, str]:
    """The sort-key bounds of the rollups of kind `prefix` (DAY, KEY_MODEL_DAY,
    KEY_ROUTE_DAY) from `start` to `end`, both included (open ends where None)."""
    low = prefix + (start.isoformat() if start else "")
    return low, prefix + (end.isoformat() if end else "") + HIGH


def day_of(sk: str, prefix: str) -> str:
    """The day (YYYY-MM-DD) a rollup's sort key of kind `prefix` names."""
    return sk[len(prefix) : len(prefix) + len("YYYY-MM-DD")]


def after_day(sk: str, prefix: str) -> str:
    """What a per-model or per-route rollup's sort key names after its day."""
    return sk[len(prefix) + len("YYYY-MM-DD#") :]


def window_sk(minute: int) -> str:
    return WINDOW + datetime.fromtimestamp(minute * 60, UTC).strftime("%Y-%m-%dT%H:%M")


def window_minute(sk: str) -> int | None:
    """The epoch minute a minute window's sort key names; None for other items."""
    if not sk.startswith(WINDOW):
        return None
    return int(datetime.fromisoformat(sk[len(WINDOW) :] + "+00:00").timestamp() // 60)


def month_sk(month: str) -> str:
    return f"{MONTH}{month}"


def month_days_prefix(month: str) -> str:
    """Begins every key daily rollup's sort key of the month `YYYY-MM`."""
    return f"{DAY}{month}-"


def endpoint_sk(endpoint: str) -> str:
    return f"{ENDPOINT}{endpoint}"


def load_sk(endpoint: str) -> str:
    """An endpoint's shared load sample (backends/loadstore.py), beside its cooldown."""
    return f"{LOAD}{endpoint}"


def item_key(pk: str, sk: str) -> dict[str, Any]:
    return {"pk": {"S": pk}, "sk": {"S": sk}}


# --- item translation ----------------------------------------------------------------
# boto3 is imported on first use, not with this module: a Lambda's init imports no boto3
# (the first request's key lookup does). Both translators are stateless: one each serves.


@functools.cache
def _serializer() -> TypeSerializer:
    from boto3.dynamodb.types import TypeSerializer

    return TypeSerializer()


@functools.cache
def _deserializer() -> TypeDeserializer:
    from boto3.dynamodb.types import TypeDeserializer

    return TypeDeserializer()


def to_item(values: Mapping[str, Any]) -> dict[str, Any]:
    """Plain values as a low-level item (boto3's TypeSerializer). None values are left
    out; floats are numbers kept to the millisecond's precision (3 decimals).

    A plain str, int or float, most of a usage record, is written as
    TypeSerializer writes it ({"S": s}, {"N": str(i)}, {"N": str(Decimal)}) without its
    chain of type tests: a record is written on every request, and the serializer cost
    it about 140 Python calls (tests/unit/test_layout.py holds the two to the same item)."""
    item: dict[str, Any] = {}
    for name, value in values.items():
        kind = type(value)
        if kind is str:
            item[name] = {"S": value}
        elif kind is int and -_INT_LIMIT < value < _INT_LIMIT:
            item[name] = {"N": str(value)}
        elif kind is float and -_FLOAT_LIMIT < value < _FLOAT_LIMIT:  # not inf, nan
            item[name] = {"N": str(Decimal(str(round(value, 3))))}
        elif value is not None:
            item[name] = _serializer().serialize(_number(value))
    return item


def from_item(item: Mapping[str, Any]) -> dict[str, Any]:
    """A low-level item as plain values (boto3's TypeDeserializer); numbers as int where
    whole, else float."""
    deserialize = _deserializer().deserialize
    return {name: plain(deserialize(value)) for name, value in item.items()}


def plain(value: Any) -> Any:
    """A deserialized value with its Decimal numbers as int (whole) or float."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value


def number(item: Mapping[str, Any] | None, name: str) -> int:
    """A whole-number attribute of a low-level item; 0 when the item or it is absent."""
    if not item or name not in item:
        return 0
    return int(_deserializer().deserialize(item[name]))


# DynamoDB numbers have 38 significant digits; past them TypeSerializer refuses an int.
_INT_LIMIT = 10**38
# and a magnitude under 1E+127 (boto3's DYNAMODB_CONTEXT, Emax=126): floats near it or past
# it are left to TypeSerializer, which refuses those past it.
_FLOAT_LIMIT = 1e125


def _number(value: Any) -> Any:
    if isinstance(value, float):
        return Decimal(str(round(value, 3)))
    return value
