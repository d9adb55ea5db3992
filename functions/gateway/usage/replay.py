"""Replay usage records that were logged instead of written (`gateway usage replay`).

When a record cannot be written within its deadline, `UsageStore.record` logs it whole as
one JSON line: `{"message": "usage_record_unwritten", "usage_record": {...}, ...}`. In AWS
the write-back function (usage/batches.py) receives these lines from a log subscription;
this module replays lines exported by hand. Each record is written with
`UsageStore.write`, idempotent on the request id: replaying twice adds nothing twice.
A line that cannot be read or written is reported and skipped; the rest are written.

Lines may carry a prefix before the JSON object (as `aws logs tail` or Lambda's text
format print them: a timestamp, a stream name...); the object is read from the first `{`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from gateway.errors import DependencyError
from gateway.usage.records import UsageRecord
from gateway.usage.store import UNWRITTEN_MESSAGE, UsageStore


@dataclass
class ReplaySummary:
    replayed: int = 0
    already_present: int = 0
    skipped: int = 0
    # Lines that carried the unwritten-record message but no readable record (counted in
    # `skipped` too): (line number, reason).
    invalid: list[tuple[int, str]] = field(default_factory=list)
    # Records DynamoDB would not take (after the store's retries): (line number, reason).
    failed: list[tuple[int, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.invalid and not self.failed

    def __str__(self) -> str:
        return (
            f"replayed {self.replayed}, already present {self.already_present}, "
            f"failed {len(self.failed)}, unreadable {len(self.invalid)}, "
            f"skipped {self.skipped}"
        )


def parse_line(line: str) -> dict[str, Any] | None:
    """The JSON object a log line holds, or None."""
    text = line.strip()
    start = text.find("{")
    if start < 0:
        return None
    try:
        value = json.loads(text[start:])
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def unwritten_record(entry: dict[str, Any]) -> UsageRecord:
    """The record of an unwritten-record log entry; ValueError if it cannot be rebuilt."""
    data = entry.get("usage_record")
    if not isinstance(data, dict):
        raise ValueError("no usage_record object")
    try:
        return UsageRecord.from_json(data)
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"unreadable usage_record ({type(exc).__name__}: {exc})") from exc


def replay(lines: Iterable[str], store: UsageStore) -> ReplaySummary:
    """Write every unwritten record found in `lines`; skip everything else (blank lines
    are not counted). A record DynamoDB refuses is listed in `failed` and the replay goes
    on; writes are idempotent, so replaying the same input again is safe."""
    summary = ReplaySummary()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        entry = parse_line(line)
        if entry is None or entry.get("message") != UNWRITTEN_MESSAGE:
            summary.skipped += 1
            continue
        try:
            record = unwritten_record(entry)
        except ValueError as exc:
            summary.skipped += 1
            summary.invalid.append((number, str(exc)))
            continue
        try:
            written = store.write(record)
        except DependencyError as exc:
            summary.failed.append((number, exc.message))
            continue
        if written:
            summary.replayed += 1
        else:
            summary.already_present += 1
    return summary
