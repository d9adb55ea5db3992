"""The summary of a chaos run: what was sent, what happened, and each invariant."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from gateway.usage.records import UsageRecord

from devstack.chaos.audit import Findings
from devstack.chaos.client import Outcome
from devstack.chaos.faults import Timeline


def table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def by_behaviour(outcomes: Iterable[Outcome], records: dict[str, list[UsageRecord]]) -> str:
    status_of = {r.request_id: str(r.status) for recs in records.values() for r in recs}
    rows: dict[str, Counter[str]] = {}
    for o in outcomes:
        row = rows.setdefault(o.spec.behaviour.name, Counter())
        row["sent"] += 1
        row[f"http {o.status if o.status is not None else 'none'}"] += 1
        if o.request_id in status_of:
            row[status_of[o.request_id]] += 1
    columns = sorted({c for row in rows.values() for c in row} - {"sent"})
    header = ["behaviour", "sent", *columns]
    body = [[name, str(row["sent"]), *(str(row[c] or "") for c in columns)]
            for name, row in sorted(rows.items())]  # fmt: skip
    return table([header, *body])


def render(
    *,
    outcomes: list[Outcome],
    records: dict[str, list[UsageRecord]],
    findings: Findings,
    timeline: Timeline,
    elapsed: float,
    concurrency: int,
) -> str:
    parts = [
        f"chaos: {len(outcomes)} requests at concurrency {concurrency} in {elapsed:.0f} s",
        "",
        "timeline:",
        *(f"  {t:7.1f} s  {what}" for t, what in timeline.events),
        "",
        "by behaviour (HTTP status, then the record's status):",
        by_behaviour(outcomes, records),
    ]
    slowest = sorted(outcomes, key=lambda o: o.seconds, reverse=True)[:5]
    parts += ["", "slowest clients: " + ", ".join(
        f"{o.spec.behaviour.name}/{o.spec.model}/{o.status or o.transport_error} {o.seconds:.1f}s"
        for o in slowest
    )]  # fmt: skip
    for name, rows in findings.tables.items():
        parts += ["", f"{name}:", table(rows)]
    parts += ["", *findings.notes, "", table(
        [["invariant", "result", "detail"],
         *([c.name, "ok" if c.ok else "VIOLATED", c.detail] for c in findings.checks)]
    )]  # fmt: skip
    parts.append("")
    parts.append("chaos: all invariants hold" if findings.ok else "chaos: VIOLATIONS (above)")
    return "\n".join(parts)
