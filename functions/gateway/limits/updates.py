"""The conditional UpdateItems of admission (limits/store.py's docstring): what each adds,
and the conditions under which it may, for a key's limits and one request's reservation."""

from __future__ import annotations

from typing import Any

from gateway.keys.apikey import ApiKey
from gateway.limits.items import STALE_MINUTES, WINDOW_TTL_SECONDS, window_attributes


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


def month_update(key: ApiKey, minute: int | None, reserve: int) -> dict[str, Any]:
    """On the month item of a key with a budget: reserve the tokens against the budget and,
    for a key with rpm or tpm too (`minute` given), in the minute's window attributes,
    removing the previous minutes' ones."""
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
    if minute is not None:
        names = _window_on_month(key, minute, reserve, adds, conditions, values)
        for back in range(1, STALE_MINUTES + 1):
            for i, name in enumerate(window_attributes(minute - back)):
                names[f"#old{back}{i}"] = name
                removes.append(f"#old{back}{i}")
        names = {n: v for n, v in names.items() if n in " ".join(adds + removes + conditions)}
    expression = "ADD " + ", ".join(adds) + (" REMOVE " + ", ".join(removes) if removes else "")
    update: dict[str, Any] = {
        "UpdateExpression": expression,
        "ConditionExpression": " AND ".join(conditions),
        "ExpressionAttributeValues": values,
    }
    if names:
        update["ExpressionAttributeNames"] = names
    return update


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
