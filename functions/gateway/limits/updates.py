"""The conditional UpdateItems of admission (limits/store.py's docstring): what each adds,
and the conditions under which it may, for a key's limits and one request's reservation."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gateway.keys.apikey import ApiKey
from gateway.limits.items import FENCE, STALE_MINUTES, WINDOW_TTL_SECONDS, window_attributes


def window_update(key: ApiKey, minute: int, reserve: int) -> dict[str, Any]:
    """On the window item of a key without a budget: count the request and reserve its
    tokens, on condition that rpm and tpm (those the key has) still allow them."""
    adds: list[str] = []
    conditions: list[str] = []
    values: dict[str, Any] = {":exp": {"N": str((minute + 1) * 60 + WINDOW_TTL_SECONDS)}}
    if key.rpm is not None:
        adds.append("requests :one")
        conditions.append("(attribute_not_exists(requests) OR requests < :rpm)")
        values[":one"] = {"N": "1"}
        values[":rpm"] = {"N": str(key.rpm)}
    if key.tpm is not None:
        adds.append("tokens :reserve")
        conditions.append("(attribute_not_exists(tokens) OR tokens <= :room)")
        values[":reserve"] = {"N": str(reserve)}
        values[":room"] = {"N": str(key.tpm - reserve)}
    return {
        "UpdateExpression": "ADD " + ", ".join(adds) + " SET expires_at = :exp",
        "ConditionExpression": " AND ".join(conditions),
        "ExpressionAttributeValues": values,
    }


def month_update(
    key: ApiKey,
    minute: int | None,
    reserve: int,
    *,
    marker: str | None = None,
    sent_ms: int | None = None,
    settled: Sequence[str] = (),
) -> dict[str, Any]:
    """On the month item of a key with a budget: reserve the tokens against the budget and,
    for a key with rpm or tpm too (`minute` given), in the minute's window attributes,
    removing the previous minutes' ones. With a `marker` and `sent_ms`, mark the admission
    too, and remove the `settled` markers (_marking)."""
    budget = key.monthly_tokens
    assert budget is not None
    adds = ["tokens :reserve"]
    conditions = ["(attribute_not_exists(tokens) OR tokens <= :room)"]
    values: dict[str, Any] = {
        ":reserve": {"N": str(reserve)},
        ":room": {"N": str(budget - reserve)},
    }
    names: dict[str, str] = {}
    removes: list[str] = []
    sets: list[str] = []
    if minute is not None:
        names = _window_on_month(key, minute, reserve, adds, conditions, values)
        for back in range(1, STALE_MINUTES + 1):
            for i, name in enumerate(window_attributes(minute - back)):
                names[f"#old{back}{i}"] = name
                removes.append(f"#old{back}{i}")
        names = {n: v for n, v in names.items() if n in " ".join(adds + removes + conditions)}
    if marker is not None:
        assert sent_ms is not None
        names |= _marking(marker, sent_ms, settled, sets, removes, conditions, values)
    expression = "ADD " + ", ".join(adds)
    if sets:
        expression += " SET " + ", ".join(sets)
    if removes:
        expression += " REMOVE " + ", ".join(removes)
    update: dict[str, Any] = {
        "UpdateExpression": expression,
        "ConditionExpression": " AND ".join(conditions),
        "ExpressionAttributeValues": values,
    }
    if names:
        update["ExpressionAttributeNames"] = names
    return update


def _marking(
    marker: str,
    sent_ms: int,
    settled: Sequence[str],
    sets: list[str],
    removes: list[str],
    conditions: list[str],
    values: dict[str, Any],
) -> dict[str, str]:
    """Add to the update's parts (returning the attribute names they use): the admission's
    marker (`SET marker = reserve`, limits/admission.py), on condition that it is absent
    (a retry of an admission that landed fails it, and so is not counted twice) and that
    no fence at or after `sent_ms` stands (the aggregator's fence keeps a late admission
    from landing after its settlement); and the removal of `settled`, markers of earlier
    admissions known to have landed (their settling no longer needs them)."""
    names = {"#m": marker, "#fence": FENCE}
    sets.append("#m = :reserve")
    conditions.append("attribute_not_exists(#m)")
    conditions.append("(attribute_not_exists(#fence) OR #fence < :sent)")
    values[":sent"] = {"N": str(sent_ms)}
    for i, name in enumerate(n for n in settled if n != marker):
        names[f"#s{i}"] = name
        removes.append(f"#s{i}")
    return names


def _window_on_month(
    key: ApiKey,
    minute: int,
    reserve: int,
    adds: list[str],
    conditions: list[str],
    values: dict[str, Any],
) -> dict[str, str]:
    """Add the window's counts and conditions (as attributes of the month item) to the
    update's parts; the attribute names they use."""
    names: dict[str, str] = {}
    names["#wr"], names["#wt"] = window_attributes(minute)
    if key.rpm is not None:
        adds.append("#wr :one")
        conditions.append("(attribute_not_exists(#wr) OR #wr < :rpm)")
        values.update({":one": {"N": "1"}, ":rpm": {"N": str(key.rpm)}})
    if key.tpm is not None:
        adds.append("#wt :reserve")
        conditions.append("(attribute_not_exists(#wt) OR #wt <= :troom)")
        values[":troom"] = {"N": str(key.tpm - reserve)}
    return names
