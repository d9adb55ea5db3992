"""`gateway endpoints list`: every model's endpoints with their shared state (cooldowns,
and the load their `/metrics` last reported); `gateway endpoints probe`: run the health
probe once (as its scheduled function does).

    gateway endpoints list [--json]
    gateway endpoints probe [--json]
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import UTC, datetime
from typing import Any, TextIO

from gateway.aws import AwsClients
from gateway.backends.cooldowns import Cooldown, CooldownStore
from gateway.backends.loadstore import LoadStore, SharedSample
from gateway.backends.probe import run_probe
from gateway.models.registry import ModelRegistry, OpenAIEndpoint
from gateway.settings import Settings

COLUMNS = (
    "model", "endpoint", "type", "target", "weight", "state", "until", "reason", "last_failure",
    "running", "waiting", "kv_usage", "sampled_at",
)  # fmt: skip


def add_parser(commands: Any) -> None:
    """Add `endpoints list|probe` to the `gateway` command's subparsers."""
    endpoints = commands.add_parser("endpoints", help="the models' upstream endpoints")
    actions = endpoints.add_subparsers(dest="endpoints_action", required=True)
    listing = actions.add_parser(
        "list",
        help="each endpoint and its state (ok, cooled_down or backing_off: until when, why; "
        "the last ended one as last_failure) and its last sampled load",
        description="Reads the models config and the endpoints' shared cooldown and load "
        "items in the usage table (docs/ROUTING.md). running, waiting and kv_usage are what "
        "the endpoint's /metrics said at sampled_at; '-' where nothing was sampled (SageMaker, "
        "a server without vLLM's gauges, or no gateway instance has routed to it lately).",
    )
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    probe = actions.add_parser(
        "probe",
        help="probe every endpoint now and set or clear cooldowns (as the schedule does)",
    )
    probe.add_argument("--json", action="store_true", help="one JSON object per line")


def _when(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def endpoint_rows(settings: Settings, aws: AwsClients, *, now: float) -> list[dict[str, Any]]:
    registry = ModelRegistry.from_settings(settings, read_ssm_parameter=aws.read_ssm_parameter)
    store = CooldownStore(client=aws.dynamodb, table=settings.usage_table)
    loads = LoadStore(client=aws.dynamodb, table=settings.usage_table).read(
        endpoints=[(model.id, upstream.label) for model in registry for upstream in model.endpoints]
    )
    rows = []
    for model in registry:
        cooldowns = store.read(model=model.id) if len(model.endpoints) else {}
        for upstream in model.endpoints:
            target = (
                upstream.base_url if isinstance(upstream, OpenAIEndpoint) else upstream.endpoint
            )
            rows.append(
                {
                    "model": model.id,
                    "endpoint": upstream.label,
                    "type": upstream.type,
                    "target": target,
                    "weight": upstream.weight,
                    **_state(cooldowns.get(upstream.label), now),
                    **_load(loads.get((model.id, upstream.label))),
                }
            )
    return rows


def _load(sample: SharedSample | None) -> dict[str, Any]:
    """The figures the endpoint's /metrics last reported (None each where it reported none,
    or where it was never sampled), and when."""
    figures = None if sample is None else sample.figures
    sampled = None if sample is None or sample.sampled_at <= 0 else _when(sample.sampled_at)
    return {
        "running": None if figures is None else int(figures.running),
        "waiting": None if figures is None else int(figures.waiting),
        "kv_usage": None if figures is None else round(figures.kv_usage, 3),
        "sampled_at": sampled,
    }


def _state(cooldown: Cooldown | None, now: float) -> dict[str, Any]:
    """`cooled_down` (failures) or `backing_off` (the endpoint's Retry-After), until when
    and why; else `ok`, with no reason. A cooldown or backoff that has ended is history, not
    a reason for `ok`: it shows as `last_failure` (what it was, and until when it lasted)."""
    if cooldown is not None and cooldown.active(now):
        return {
            "state": "cooled_down",
            "until": _when(cooldown.until),
            "reason": cooldown.reason,
            "last_failure": None,
        }
    if cooldown is not None and cooldown.backing_off(now):
        return {
            "state": "backing_off",
            "until": _when(cooldown.backoff_until),
            "reason": cooldown.backoff_reason,
            "last_failure": None,
        }
    return {"state": "ok", "until": None, "reason": None, "last_failure": _last(cooldown)}


def _last(cooldown: Cooldown | None) -> str | None:
    """The latest ended cooldown or backoff: `<reason> until <when>`; None when there was
    none, or when the probe cleared the cooldown last (its item then says it was healthy)."""
    if cooldown is None:
        return None
    ended = [
        (until, reason)
        for until, reason in (
            (cooldown.until, cooldown.reason),
            (cooldown.backoff_until, cooldown.backoff_reason),
        )
        if until > 0 and reason
    ]
    if not ended:
        return None
    until, reason = max(ended)
    return f"{reason} until {_when(until)}"


def _table(rows: list[dict[str, Any]], columns: tuple[str, ...], out: TextIO) -> None:
    cells = [[("-" if r[c] is None else str(r[c])) for c in columns] for r in rows]
    widths = [max([len(c), *(len(row[i]) for row in cells)]) for i, c in enumerate(columns)]
    out.write("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip() + "\n")
    for row in cells:
        out.write("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() + "\n")


def run(args: argparse.Namespace, *, aws: AwsClients, settings: Settings, out: TextIO) -> int:
    if args.endpoints_action == "probe":
        results = run_probe(settings, aws)
        rows = [
            {"model": r.model, "endpoint": r.endpoint, "healthy": r.healthy,
             "detail": r.detail, "change": r.change}
            for r in results
        ]  # fmt: skip
        columns: tuple[str, ...] = ("model", "endpoint", "healthy", "detail", "change")
    else:
        rows = endpoint_rows(settings, aws, now=time.time())
        columns = COLUMNS
    if args.json:
        for row in rows:
            out.write(json.dumps(row) + "\n")
    else:
        _table(rows, columns, out)
    return 0
