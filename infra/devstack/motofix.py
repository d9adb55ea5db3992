"""Make moto's DynamoDB behave like DynamoDB where the local stack and tests rely on it.

Three gaps, the first two measured here:
- Item writes are not atomic under concurrency: moto's threaded server interleaves two
  UpdateItems on one item (40 threads against rpm=10 admitted 12 in about 1 run of 4).
  DynamoDB serializes writes per item, so we serialize moto's writes: of two conditional
  writes racing for one item, one wins and the other gets ConditionalCheckFailedException,
  counted in `FAULTS.condition_failures` by operation (the shared endpoint-load claims
  rely on exactly this).
- TransactWriteItems deep-copies every table it touches, for rollback: its cost grows with
  the table (about 100 ms per request after a few thousand records). We snapshot only the
  items the transaction touches, and restore those if it fails.
- Transactions take no time and never conflict. In DynamoDB an item inside an in-flight
  transaction refuses other writes: PutItem/UpdateItem/DeleteItem get
  TransactionConflictException ("Operation was rejected because there is an ongoing
  transaction for the item."), a second transaction is cancelled with
  TransactionCanceledException whose CancellationReasons carry `TransactionConflict`
  ("Transaction is ongoing for the item") at that item's index and `None` elsewhere.
  With `FAULTS.transaction_seconds` > 0 a transaction holds its items that long, then
  applies atomically, with exactly these refusals meanwhile.

`FAULTS` also holds what devstack.dynamodb's HTTP layer injects (latency, throttling,
pauses) and counts calls per operation; tests and `make bench` set it through that
server's control endpoint (`/_devstack/faults`).
"""

from __future__ import annotations

import copy
import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import wraps
from typing import Any

import moto.dynamodb.models as dynamodb_models
from moto.dynamodb.exceptions import (
    ConditionalCheckFailed,
    DynamodbException,
    TransactionCanceledException,
)
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.table import Table

_LOCK = threading.RLock()  # reentrant: transact_write_items calls put_item/update_item
_PATCHED = "_gateway_motofix"
ERROR_PREFIX = "com.amazonaws.dynamodb.v20120810#"
CONFLICT_MESSAGE = "Operation was rejected because there is an ongoing transaction for the item."
CONFLICT_REASON = "Transaction is ongoing for the item"


@dataclass
class Faults:
    """What the local DynamoDB does beyond moto (all off by default)."""

    transaction_seconds: float = 0.0  # how long a transaction holds its items
    latency_seconds: float = 0.0  # added to every DynamoDB call
    throttle_rate: float = 0.0  # share of calls refused with ProvisionedThroughputExceeded
    paused: bool = False  # calls wait (connections stay open) until resumed
    calls: Counter[str] = field(default_factory=Counter)  # DynamoDB calls by operation
    conflicts: Counter[str] = field(default_factory=Counter)  # refusals by operation
    # conditional writes whose condition was false, by operation
    condition_failures: Counter[str] = field(default_factory=Counter)
    resumed: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.resumed.set()

    def update(self, values: dict[str, Any]) -> None:
        for name in ("transaction_seconds", "latency_seconds", "throttle_rate"):
            if name in values:
                setattr(self, name, float(values[name]))
        if "paused" in values:
            self.paused = bool(values["paused"])
            (self.resumed.clear if self.paused else self.resumed.set)()
        if values.get("reset_counts"):
            self.calls.clear()
            self.conflicts.clear()
            self.condition_failures.clear()

    def to_json(self) -> dict[str, Any]:
        return {
            "transaction_seconds": self.transaction_seconds,
            "latency_seconds": self.latency_seconds,
            "throttle_rate": self.throttle_rate,
            "paused": self.paused,
            "calls": dict(self.calls),
            "conflicts": dict(self.conflicts),
            "condition_failures": dict(self.condition_failures),
        }


FAULTS = Faults()
# Items held by in-flight transactions: (table, key) -> holder count.
_HELD: Counter[tuple[str, str]] = Counter()
_APPLYING = threading.local()  # set while this thread applies a transaction


class TransactionConflictException(DynamodbException):
    error_type = ERROR_PREFIX + "TransactionConflictException"

    def __init__(self) -> None:
        super().__init__(self.error_type, message=CONFLICT_MESSAGE)


def _held_key(table_name: str, key: dict[str, Any]) -> tuple[str, str]:
    return (table_name, json.dumps(key, sort_keys=True))


class _TableSafeCopy:
    """`copy` for moto's module, whose deepcopy leaves whole tables alone."""

    def __getattr__(self, name: str) -> Any:
        return getattr(copy, name)

    @staticmethod
    def deepcopy(value: Any, memo: Any = None) -> Any:
        if isinstance(value, Table):
            return value  # transactions are rolled back item by item instead (below)
        return copy.deepcopy(value, memo)


def _serialized(method: Callable[..., Any]) -> Callable[..., Any]:
    operation = method.__name__

    @wraps(method)
    def locked(self: DynamoDBBackend, table_name: str, *args: Any, **kwargs: Any) -> Any:
        with _LOCK:
            if _HELD and not getattr(_APPLYING, "active", False):
                first = args[0] if args else kwargs.get("key", kwargs.get("item_attrs"))
                op = "Put" if operation == "put_item" else "Update"
                key = _item_key(self, op, {"TableName": table_name, "Item": first, "Key": first})
                if _HELD[_held_key(table_name, key)]:
                    FAULTS.conflicts[operation] += 1
                    raise TransactionConflictException()
            try:
                result = method(self, table_name, *args, **kwargs)
            except ConditionalCheckFailed:
                FAULTS.condition_failures[operation] += 1
                raise
            # moto returns the live item and reads ReturnValues from it after the call,
            # when a concurrent update may have changed it; DynamoDB answers with the
            # item as this update left it: a copy taken under the lock.
            return copy.deepcopy(result) if operation == "update_item" else result

    return locked


def _item_key(backend: DynamoDBBackend, op_type: str, op: dict[str, Any]) -> dict[str, Any]:
    if op_type != "Put":
        return dict(op["Key"])
    table = backend.get_table(op["TableName"])
    key = {table.hash_key_attr: op["Item"][table.hash_key_attr]}
    if table.range_key_attr is not None:
        key[table.range_key_attr] = op["Item"][table.range_key_attr]
    return key


def _held_keys(backend: DynamoDBBackend, items: list[dict[str, Any]]) -> list[tuple[str, str]]:
    keys = []
    for entry in items:
        op_type, op = next(iter(entry.items()))
        keys.append(_held_key(op["TableName"], _item_key(backend, op_type, op)))
    return keys


def _holding(method: Callable[..., Any]) -> Callable[..., Any]:
    """Hold the transaction's items for FAULTS.transaction_seconds, refusing other
    writes to them as DynamoDB does, then apply it."""

    @wraps(method)
    def transact(self: DynamoDBBackend, transact_items: list[dict[str, Any]]) -> Any:
        duration = FAULTS.transaction_seconds
        if duration <= 0:
            return method(self, transact_items)
        with _LOCK:
            keys = _held_keys(self, [e for e in transact_items if _table_of(e) in self.tables])
            if any(_HELD[k] for k in keys):
                FAULTS.conflicts["transact_write_items"] += 1
                raise TransactionCanceledException(
                    [
                        ("TransactionConflict", CONFLICT_REASON, None)
                        if _HELD[k]
                        else (None, None, None)
                        for k in keys
                    ]
                )
            _HELD.update(keys)
        try:
            time.sleep(duration)
            return method(self, transact_items)
        finally:
            with _LOCK:
                _HELD.subtract(keys)
                for k in keys:
                    if _HELD[k] <= 0:
                        del _HELD[k]

    return transact


def _table_of(entry: dict[str, Any]) -> str:
    return str(next(iter(entry.values())).get("TableName"))


def _transactional(method: Callable[..., Any]) -> Callable[..., Any]:
    @wraps(method)
    def transact(self: DynamoDBBackend, transact_items: list[dict[str, Any]]) -> Any:
        with _LOCK:
            _APPLYING.active = True
            before = []
            for entry in transact_items:
                op_type, op = next(iter(entry.items()))
                if op.get("TableName") not in self.tables:
                    continue
                key = _item_key(self, op_type, op)
                item = self.get_item(op["TableName"], key)
                old = copy.deepcopy(item.to_json()["Attributes"]) if item else None
                before.append((op["TableName"], key, old))
            try:
                return method(self, transact_items)
            except Exception:
                for table_name, key, old in before:
                    if old is None:
                        self.delete_item(table_name, key)
                    else:
                        self.put_item(table_name, old)
                raise
            finally:
                _APPLYING.active = False

    return transact


def install() -> None:
    """Patch moto's DynamoDB backend (idempotent; affects this process only)."""
    if getattr(DynamoDBBackend, _PATCHED, False):
        return
    dynamodb_models.copy = _TableSafeCopy()  # type: ignore[assignment,attr-defined]
    for name in ("put_item", "update_item", "delete_item"):
        setattr(DynamoDBBackend, name, _serialized(getattr(DynamoDBBackend, name)))
    DynamoDBBackend.transact_write_items = _holding(  # type: ignore[method-assign]
        _transactional(DynamoDBBackend.transact_write_items)
    )
    setattr(DynamoDBBackend, _PATCHED, True)
