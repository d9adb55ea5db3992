"""`make chaos` scaled down (devstack.chaos): the same code on a real local stack, a few
dozen mixed requests with both DynamoDB pauses and the replica pause, then the audit.

The month-counter invariant needs every admission settled after DynamoDB pauses (issue 27,
item 5; branch wip/settle): until that is merged its test is expected to fail.
"""

from __future__ import annotations

import pytest
from devstack.chaos.__main__ import Options, Result, run

MONTH = "month counters = records (within one reservation)"


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


def test_every_invariant_but_the_month_counters_holds(result: Result) -> None:
    failed = [c for c in result.findings.checks if not c.ok and c.name != MONTH]
    assert not failed, result.summary


@pytest.mark.xfail(reason="admissions lost in DynamoDB pauses are settled by wip/settle")
def test_month_counters_equal_the_records(result: Result) -> None:
    month = next(c for c in result.findings.checks if c.name == MONTH)
    assert month.ok, result.summary
