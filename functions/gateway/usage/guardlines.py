"""What a guard-screened usage record adds to the rollups besides its own counters
(usage/aggregate.py; docs/GUARDRAILS.md, "The usage record, billing and rollups")."""

from __future__ import annotations

import re

from gateway import layout
from gateway.usage.records import UsageRecord

ItemKey = tuple[str, str]
GUARD_ROUTE = "guard"
# A guard category as the guard's parser accepts it (it names a rollup attribute).
_CATEGORY = re.compile(r"^S[0-9]{1,3}$")


def guard_rollups(
    record: UsageRecord, *, own_items: list[ItemKey]
) -> list[tuple[ItemKey, dict[str, int]]]:
    """A screened record's guard line: the guard's own tokens on the guard model's rollups
    (model/day, key/model/day) and the key's route `guard`, each counting the request
    once, and in the key's daily totals; and, when it was blocked, `guard_blocked` and
    `guard_blocked_<category>` on the record's own rollup items (`own_items`)."""
    if not record.guard_model:
        return []
    prompt, completion = record.guard_prompt_tokens or 0, record.guard_completion_tokens or 0
    tokens = {"prompt_tokens": prompt, "completion_tokens": completion}
    tokens["total_tokens"] = prompt + completion
    line = {"requests": 1, **tokens}
    key, day = layout.key_pk(record.key_id), layout.day_sk(record.day)
    found = [
        ((layout.model_pk(record.guard_model), day), line),
        ((key, layout.key_model_day_sk(record.day, record.guard_model)), line),
        ((key, layout.key_route_day_sk(record.day, GUARD_ROUTE)), line),
        ((key, day), tokens),
    ]
    categories = [c for c in (record.guard_blocked or "").split(",") if _CATEGORY.match(c)]
    if record.guard_action in ("blocked_input", "blocked_output"):
        blocks = {"guard_blocked": 1, **{f"guard_blocked_{c}": 1 for c in categories}}
        found += [(item, blocks) for item in own_items]
    return found
