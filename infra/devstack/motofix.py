"""Make moto's DynamoDB behave like DynamoDB where the local stack and tests rely on it.

Two gaps, both measured here:
- Item writes are not atomic under concurrency: moto's threaded server interleaves two
  UpdateItems on one item (40 threads against rpm=10 admitted 12 in about 1 run of 4).
  DynamoDB serializes writes per item, so we serialize moto's writes.
- TransactWriteItems deep-copies every table it touches, for rollback: its cost grows with
  the table (about 100 ms per request after a few thousand records). We snapshot only the
  items the transaction touches, and restore those if it fails.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable
from functools import wraps
from typing import Any

import moto.dynamodb.models as dynamodb_models
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.table import Table

_LOCK = threading.RLock()  # reentrant: transact_write_items calls put_item/update_item
_PATCHED = "_gateway_motofix"


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
    @wraps(method)
    def locked(self: DynamoDBBackend, *args: Any, **kwargs: Any) -> Any:
        with _LOCK:
            return method(self, *args, **kwargs)

    return locked


def _item_key(backend: DynamoDBBackend, op_type: str, op: dict[str, Any]) -> dict[str, Any]:
    if op_type != "Put":
        return dict(op["Key"])
    table = backend.get_table(op["TableName"])
    key = {table.hash_key_attr: op["Item"][table.hash_key_attr]}
    if table.range_key_attr is not None:
        key[table.range_key_attr] = op["Item"][table.range_key_attr]
    return key


def _transactional(method: Callable[..., Any]) -> Callable[..., Any]:
    @wraps(method)
    def transact(self: DynamoDBBackend, transact_items: list[dict[str, Any]]) -> Any:
        with _LOCK:
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

    return transact


def install() -> None:
    """Patch moto's DynamoDB backend (idempotent; affects this process only)."""
    if getattr(DynamoDBBackend, _PATCHED, False):
        return
    dynamodb_models.copy = _TableSafeCopy()  # type: ignore[assignment]
    for name in ("put_item", "update_item", "delete_item"):
        setattr(DynamoDBBackend, name, _serialized(getattr(DynamoDBBackend, name)))
    DynamoDBBackend.transact_write_items = _transactional(  # type: ignore[method-assign]
        DynamoDBBackend.transact_write_items
    )
    setattr(DynamoDBBackend, _PATCHED, True)
