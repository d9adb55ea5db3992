"""The invariants of a chaos run, checked once the aggregator has drained.

- records: every request that passed authentication has exactly one record (matched by
  request id; a client that left before the headers has no id, so its key must hold
  exactly as many records no client saw); refusals with none: a forged key (401) and a
  503 at the key lookup (DynamoDB not answering before the caller is known). A client
  that left before such a 503 never saw it: the gateway's log line of the refusal
  (`request rejected`, 503, with its request id) does, and no record has that id; each
  such line accounts for one request sent without an id and left without a record;
- no gateway 500: no 500 answered, no `internal_error` record; a 502/503/504 only where
  the harness injected an upstream fault or paused DynamoDB (a 503 `unavailable`);
- rollups: every key/day, model/day, key/model/day and key/route/day item equals the sums
  of its records;
- month counters: each budgeted key's `month#` tokens equal the sum of its records' billed
  tokens, within one reservation (one admission in flight);
- held after leaving: a request whose client left (dropped, or gone before the first byte)
  ended within `max_tokens` x TPOT of the departure (plus `slack`), per its record's
  latency; gpusim has nothing still generating (/sim/stats `active` 0 on every replica).
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from gateway import layout
from gateway.usage.aggregate import COUNTERS, rollup_keys, rollup_values
from gateway.usage.records import UsageRecord, UsageStatus

from devstack.chaos.client import Outcome
from devstack.chaos.stack import USAGE_TABLE, Stack

LOOKUP_UNAVAILABLE = "key lookup"  # in the 503's message when the caller is not yet known


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


@dataclass
class Findings:
    checks: list[Check] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    tables: dict[str, list[list[str]]] = field(default_factory=dict)

    def add(self, name: str, ok: bool, detail: str) -> None:
        self.checks.append(Check(name, ok, detail))

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)


def records_by_key(stack: Stack, key_ids: dict[str, str]) -> dict[str, list[UsageRecord]]:
    usage = stack.usage()
    return {name: usage.query(key_id=key_id) for name, key_id in key_ids.items()}


def started(record: UsageRecord) -> float:
    """When the gateway received the request (created_at is when it closed the record)."""
    return record.created_at.timestamp() - (record.latency_ms or 0.0) / 1000


def ended(record: UsageRecord) -> float:
    return record.created_at.timestamp()


def _nearest(sent: list[Outcome], got: list[UsageRecord]) -> dict[int, UsageRecord]:
    """Pair requests (in the order sent) with records (in the order the gateway began
    them), keeping both orders, at the least total distance between a request's sending
    and its record's start: an alignment, so requests without a record (a key-lookup
    503) are skipped wherever they fall rather than shifting the later pairs."""
    n, m = len(sent), len(got)
    skip_record = 1e9  # a record left unpaired: only when there are more records
    cost = [[0.0] * (m + 1) for _ in range(n + 1)]
    for j in range(1, m + 1):
        cost[0][j] = j * skip_record
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            pair = cost[i - 1][j - 1] + abs(started(got[j - 1]) - sent[i - 1].sent_wall)
            cost[i][j] = min(pair, cost[i - 1][j], cost[i][j - 1] + skip_record)
    pairs: dict[int, UsageRecord] = {}
    i, j = n, m
    while i > 0 and j > 0:
        here = cost[i][j]
        if here == cost[i - 1][j - 1] + abs(started(got[j - 1]) - sent[i - 1].sent_wall):
            pairs[sent[i - 1].spec.index] = got[j - 1]
            i, j = i - 1, j - 1
        elif here == cost[i - 1][j]:
            i -= 1
        else:
            j -= 1
    return pairs


def _pair_unseen(
    name: str,
    recs: list[UsageRecord],
    seen: set[str],
    anonymous: dict[tuple[str, str], list[Outcome]],
    paired: dict[int, UsageRecord],
    unexplained: list[str],
) -> int:
    """Pair the key's records no client saw with its requests sent without an id (by key
    and route, by time); the number of those requests left without a record."""
    missing = 0
    unseen: dict[tuple[str, str], list[UsageRecord]] = defaultdict(list)
    for r in recs:
        if r.request_id not in seen:
            unseen[(name, r.route)].append(r)
    for group in set(unseen) | {g for g in anonymous if g[0] == name}:
        sent = sorted(anonymous.get(group, []), key=lambda o: o.sent_wall)
        got = sorted(unseen.get(group, []), key=started)
        if len(sent) != len(got):
            missing += max(len(sent) - len(got), 0)
            unexplained.append(f"{group}: {len(sent)} sent without an id, {len(got)} records")
        paired.update(_nearest(sent, got))
    return missing


def refused_503(log_lines: list[str]) -> set[str]:
    """The request ids of the gateway's 503 refusals (its `request rejected` log lines)."""
    ids = set()
    for line in log_lines:
        if '"request rejected"' not in line:
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("status") == 503 and entry.get("request_id"):
            ids.add(str(entry["request_id"]))
    return ids


def lookup_refusals(records: dict[str, list[UsageRecord]], refused: set[str]) -> set[str]:
    """The 503s refused at the key lookup: a 503 refusal with no record (the lookup's are
    the only ones a metered route does not record)."""
    recorded = {r.request_id for recs in records.values() for r in recs}
    return refused - recorded


def check_records(
    findings: Findings,
    outcomes: list[Outcome],
    records: dict[str, list[UsageRecord]],
    *,
    lookup_503s: set[str],
) -> dict[int, UsageRecord]:
    """Expected = found. Returns each outcome's record (by the spec's index): by request id,
    or, for a client that left before the headers, the records no client saw of the same
    key and route, paired by when they were sent and received (a record of a client gone
    mid-upload has no model yet). `lookup_503s`: the request ids of the 503s refused at
    the key lookup (lookup_refusals), which leave no record by design."""
    expected = missing = duplicates = anonymous_missing = 0
    paired: dict[int, UsageRecord] = {}
    refusals: Counter[str] = Counter()
    unexplained: list[str] = []
    anonymous: dict[tuple[str, str], list[Outcome]] = defaultdict(list)
    for name, recs in records.items():
        ids = Counter(r.request_id for r in recs)
        duplicates += sum(n - 1 for n in ids.values() if n > 1)
        by_id = {r.request_id: r for r in recs}
        seen = set()
        for o in outcomes:
            if o.spec.key != name or not o.spec.behaviour.authenticated:
                continue
            spec = o.spec
            if o.request_id is None and not o.sent:
                refusals["none: the client left before sending its headers"] += 1
                continue
            if o.request_id is None:
                anonymous[(name, spec.route)].append(o)
                expected += 1
                continue
            seen.add(o.request_id)
            if o.request_id in by_id:
                expected += 1
                paired[spec.index] = by_id[o.request_id]
            elif o.status == 503 and (
                LOOKUP_UNAVAILABLE in o.error_message or o.request_id in lookup_503s
            ):
                refusals["503 at the key lookup"] += 1
            else:
                expected += 1
                missing += 1
                unexplained.append(f"{spec.behaviour.name}/{o.status}/{o.request_id}")
        anonymous_missing += _pair_unseen(name, recs, seen, anonymous, paired, unexplained)
    # Key-lookup 503s no client saw: each refused a request whose client had left (no id).
    seen_ids = {o.request_id for o in outcomes if o.request_id is not None}
    unseen_503s = len(lookup_503s - seen_ids)
    if anonymous_missing == unseen_503s:
        expected -= unseen_503s
        refusals["503 at the key lookup, its client gone before the answer"] = unseen_503s
        unexplained = [u for u in unexplained if "sent without an id" not in u]
    else:
        missing += anonymous_missing
        unexplained.append(f"{unseen_503s} key-lookup 503s no client saw")
    refusals["401 forged key"] = sum(1 for o in outcomes if not o.spec.behaviour.authenticated)
    found = sum(len(r) for r in records.values())
    findings.add(
        "records expected = found",
        missing == 0 and duplicates == 0 and found == expected,
        f"expected {expected}, found {found}, missing {missing}, duplicates {duplicates}"
        + (f"; {unexplained[:5]}" if unexplained else ""),
    )
    findings.notes.append(
        "no record by design: " + ", ".join(f"{k}: {v}" for k, v in sorted(refusals.items()))
    )
    return paired


def check_5xx(
    findings: Findings,
    outcomes: list[Outcome],
    records: dict[str, list[UsageRecord]],
    *,
    lookup_503s: set[str],
) -> None:
    answered_500 = [o for o in outcomes if o.status == 500 or o.error_code == "internal_error"]
    internal = [
        r for recs in records.values() for r in recs if r.status is UsageStatus.INTERNAL_ERROR
    ]
    findings.add(
        "0 gateway 500s",
        not answered_500 and not internal,
        f"{len(answered_500)} answered 500, {len(internal)} internal_error records",
    )
    by_id = {r.request_id: r for recs in records.values() for r in recs}
    unexplained = [
        o
        for o in outcomes
        if (o.status in (502, 504) and not o.spec.behaviour.fault)
        or (o.status == 503 and not _dependency_503(o, by_id, lookup_503s))
    ]
    findings.add(
        "5xx only from injected faults",
        not unexplained,
        f"{len(unexplained)} unexplained: "
        + str(
            Counter(
                (o.spec.behaviour.name, o.spec.model, o.status, o.error_message[:60])
                for o in unexplained
            ).most_common(4)
        ),
    )


def _dependency_503(outcome: Outcome, by_id: dict[str, UsageRecord], lookup_503s: set[str]) -> bool:
    """A 503 because DynamoDB did not answer: at the key lookup (its message says so, or,
    for a client gone before reading it, the gateway's log), or recorded `unavailable`."""
    if LOOKUP_UNAVAILABLE in outcome.error_message or outcome.request_id in lookup_503s:
        return True
    record = by_id.get(outcome.request_id or "")
    return record is not None and record.status is UsageStatus.UNAVAILABLE


def check_rollups(findings: Findings, stack: Stack, records: dict[str, list[UsageRecord]]) -> None:
    sums: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    for recs in records.values():
        for r in recs:
            for item in rollup_keys(r):
                sums[item].update(rollup_values(r))
    wrong = []
    for (pk, sk), want in sums.items():
        got = stack.client.get_item(
            TableName=USAGE_TABLE, Key={"pk": {"S": pk}, "sk": {"S": sk}}, ConsistentRead=True
        ).get("Item", {})
        have = {n: int(got.get(n, {"N": "0"})["N"]) for n in COUNTERS}
        if have != {n: want[n] for n in COUNTERS}:
            wrong.append(f"{pk} {sk}: {have} != {dict(want)}")
    findings.add(
        "rollups = records",
        not wrong,
        f"{len(sums)} rollup items, {len(wrong)} differ" + (f": {wrong[:3]}" if wrong else ""),
    )


def month_counter(stack: Stack, key_id: str, month: str) -> int:
    item = stack.client.get_item(
        TableName=USAGE_TABLE,
        Key={"pk": {"S": layout.key_pk(key_id)}, "sk": {"S": layout.month_sk(month)}},
        ConsistentRead=True,
    ).get("Item", {})
    return int(item.get("tokens", {"N": "0"})["N"])


def check_month_counters(
    findings: Findings,
    stack: Stack,
    key_ids: dict[str, str],
    budgeted: set[str],
    records: dict[str, list[UsageRecord]],
) -> None:
    month = datetime.now(UTC).strftime("%Y-%m")
    rows, bad = [], []
    for name in sorted(budgeted):
        counter = month_counter(stack, key_ids[name], month)
        billed = sum(r.total_tokens for r in records[name])
        one = max((r.reserved_tokens for r in records[name]), default=0)
        ok = abs(counter - billed) <= one
        rows.append([name, str(counter), str(billed), f"{counter - billed:+d}", str(one)])
        if not ok:
            bad.append(name)
    findings.tables["month counters"] = [
        ["key", "counter", "records", "diff", "one reservation"],
        *rows,
    ]
    findings.add(
        "month counters = records (within one reservation)",
        not bad,
        f"{len(budgeted) - len(bad)} of {len(budgeted)} keys" + (f"; off: {bad}" if bad else ""),
    )


def check_held(
    findings: Findings, outcomes: list[Outcome], paired: dict[int, UsageRecord], *, slack: float
) -> None:
    """How long each request went on after its client left (its record's end against the
    departure, on this machine's clock), against max_tokens x TPOT (+ slack); and whether
    a request that went on past its client's departure says client_disconnected."""
    held: list[str] = []
    billed_as_delivered: list[str] = []
    statuses: Counter[str] = Counter()
    checked = 0
    for o in outcomes:
        record = paired.get(o.spec.index)
        if o.left_at is None or record is None:
            continue
        checked += 1
        how = "gave up" if o.transport_error else "after headers" if o.request_id else "early"
        statuses[f"{o.spec.behaviour.name} ({how}): {record.status}"] += 1
        after = ended(record) - (o.sent_wall + o.left_at)
        bound = o.spec.max_tokens * o.spec.tpot_ms / 1000 + slack
        what = f"{o.spec.behaviour.name} {o.spec.model} {record.status}: {after:.1f}s"
        if after > bound:
            held.append(f"{what} > {bound:.1f}s")
        if record.status is UsageStatus.COMPLETED and after > slack:
            billed_as_delivered.append(what)
    findings.tables["departed clients"] = [
        ["behaviour (when it left): record status", "records"],
        *([k, str(v)] for k, v in sorted(statuses.items())),
    ]
    findings.add(
        "no request held past max_tokens x TPOT after its client left",
        not held,
        f"{checked} departures, {len(held)} held" + (f": {held[:4]}" if held else ""),
    )
    findings.add(
        "a request that outlived its client is not recorded completed",
        not billed_as_delivered,
        f"{len(billed_as_delivered)} completed after the client left"
        + (f": {billed_as_delivered[:4]}" if billed_as_delivered else ""),
    )


def sim_stats(url: str) -> dict[str, int]:
    with urllib.request.urlopen(url + "/sim/stats", timeout=30) as response:
        stats: dict[str, int] = json.loads(response.read())
    return stats


def check_gpusim(
    findings: Findings, stack: Stack, records: dict[str, list[UsageRecord]], *, wait: float
) -> None:
    """Nothing still generating on any replica (waiting up to `wait` for late ends)."""
    deadline = time.monotonic() + wait
    while True:
        stats = {r.name: sim_stats(r.url) for r in stack.replicas}
        active = sum(s["active"] for s in stats.values())
        if active == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    departed = sum(
        1 for recs in records.values() for r in recs
        if r.status is UsageStatus.CLIENT_DISCONNECTED
    )  # fmt: skip
    cancelled = sum(s["cancelled"] for s in stats.values())
    findings.tables["gpusim"] = [
        ["replica", "requests", "completed", "cancelled", "active"],
        *(
            [name, *(str(s[k]) for k in ("requests", "completed", "cancelled", "active"))]
            for name, s in stats.items()
        ),
    ]
    findings.notes.append(
        f"client_disconnected records {departed}; generations gpusim saw cancelled {cancelled}"
    )
    findings.add("gpusim: nothing left generating", active == 0, f"active {active}")


def check_logs(findings: Findings, stack: Stack, secrets: dict[str, str]) -> None:
    leaked = [name for name, s in secrets.items() if any(s in line for line in stack.log_lines)]
    errors = Counter(
        _message(line) for line in stack.log_lines
        if '"level":"ERROR"' in line and UNWRITTEN not in line
    )  # fmt: skip
    findings.add("no key secret in the gateway's logs", not leaked, f"leaked: {leaked or 'none'}")
    findings.notes.append(
        f"gateway log lines {len(stack.log_lines)}, ERROR lines {errors.most_common(5)}, "
        f"records written back from logs {stack.writebacks} "
        f"(write-back failures {stack.writeback_failures})"
    )


UNWRITTEN = "usage_record_unwritten"


def _message(line: str) -> str:
    try:
        return str(json.loads(line).get("message", ""))[:80]
    except ValueError:
        return line[:80]


def audit(
    stack: Stack,
    outcomes: list[Outcome],
    *,
    key_ids: dict[str, str],
    secrets: dict[str, str],
    budgeted: set[str],
    slack: float,
    gpusim_wait: float = 30.0,
) -> tuple[Findings, dict[str, list[UsageRecord]]]:
    findings = Findings()
    records = records_by_key(stack, key_ids)
    lookup_503s = lookup_refusals(records, refused_503(stack.log_lines))
    paired = check_records(findings, outcomes, records, lookup_503s=lookup_503s)
    check_5xx(findings, outcomes, records, lookup_503s=lookup_503s)
    check_rollups(findings, stack, records)
    check_month_counters(findings, stack, key_ids, budgeted, records)
    check_held(findings, outcomes, paired, slack=slack)
    check_gpusim(findings, stack, records, wait=gpusim_wait)
    check_logs(findings, stack, secrets)
    return findings, records


def statuses(outcomes: list[Outcome]) -> dict[str, Any]:
    return dict(Counter(str(o.status) for o in outcomes).most_common())
