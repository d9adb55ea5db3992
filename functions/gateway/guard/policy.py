"""Which guard policy applies to a request, and what a verdict means under it (what a
request's screenings add up to is metering/guard_ledger.py)."""

from __future__ import annotations

from collections.abc import Sequence

from gateway.guard.prompt import Verdict
from gateway.models.registry import GuardPolicy


def select_policy(
    policies: Sequence[GuardPolicy], *, model_id: str, key_id: str
) -> GuardPolicy | None:
    """The first policy naming the key among those that apply, else the first that applies
    to every key; None: the request is not screened."""
    applying = [p for p in policies if p.applies_to(model_id=model_id, key_id=key_id)]
    for policy in applying:
        if policy.keys is not None:
            return policy
    return applying[0] if applying else None


def blocking(policy: GuardPolicy, verdict: Verdict) -> tuple[str, ...]:
    """The verdict's categories that block under the policy (empty: the content passes)."""
    if verdict.safe:
        return ()
    return tuple(c for c in verdict.categories if policy.blocks(c))
