"""`make chaos` scaled down (devstack.chaos): the same code on a real local stack, a few
dozen mixed requests with both DynamoDB pauses and the replica pause, then the audit.

Three invariants still fail on main, each for a finding of the full run (docs/USAGE.md,
"The chaos run"), and are expected to fail until it is fixed: month counters (admissions
lost in DynamoDB pauses, issue 27 item 5, branch wip/settle); records (a client gone
before the headers sometimes leaves no record, under load); held (a client gone during a
DynamoDB pause is held by the admission's deadline, not its departure).
"""

from __future__ import annotations

import pytest
from devstack.chaos.__main__ import Options, Result, run

MONTH = "month counters = records (within one reservation)"
RECORDS = "records expected = found"
HELD = "no request held past max_tokens x TPOT after its client left"
KNOWN = {MONTH, RECORDS, HELD}


@pytest.fixture(scope="module")
def result() -> Result:
    options = Options(
        requests=60, concurrency=12, dynamodb_pause=1.5, replica_pause=2.0,
        client_timeout=10.0, seed=7,
    )  # fmt: skip
    return run(options)


def test_the_run_covers_every_behaviour_and_fault(result: Result) -> None:
    names = {c.name for c in result.findings.checks}
    assert MONTH in names and "records expected = found" in names
    assert "DynamoDB paused" in result.summary and "SIGSTOP" in result.summary
    assert "SIGCONT" in result.summary and "aggregator drained" in result.summary


def test_every_other_invariant_holds(result: Result) -> None:
    failed = [c for c in result.findings.checks if not c.ok and c.name not in KNOWN]
    assert not failed, result.summary


def check(result: Result, name: str) -> None:
    found = next(c for c in result.findings.checks if c.name == name)
    assert found.ok, result.summary


@pytest.mark.xfail(reason="the full run still finds one key's month counter off after the pauses")
def test_month_counters_equal_the_records(result: Result) -> None:
    check(result, MONTH)


@pytest.mark.xfail(reason="a client gone before the headers sometimes leaves no record")
def test_every_authenticated_request_has_one_record(result: Result) -> None:
    check(result, RECORDS)


@pytest.mark.xfail(reason="a client gone in a DynamoDB pause is held by the admission deadline")
def test_no_request_is_held_after_its_client_left(result: Result) -> None:
    check(result, HELD)
