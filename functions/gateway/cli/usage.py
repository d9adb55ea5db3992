"""`gateway usage`: a key's raw records, or daily totals (or totals per model or route) of a
key, an owner's keys or a model, as a table, JSON lines or CSV. Its repair actions (`replay`,
`rebuild-rollups`) are in cli/repair.py."""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
from collections.abc import Sequence
from datetime import UTC, date
from functools import partial
from typing import Any

from gateway.cli import argtypes, repair
from gateway.cli.common import CliError, Context, check_range, print_table
from gateway.usage import UsageRecord
from gateway.usage.query import UsageQuery

USAGE_COLUMNS = (
    "created_at", "request_id", "model", "status", "stream",
    "prompt_tokens", "completion_tokens", "total_tokens", "latency_ms",
)  # fmt: skip
# Every field of a raw record, as `--json` and `--csv` print it.
RECORD_FIELDS = (*(f.name for f in dataclasses.fields(UsageRecord)), "total_tokens")
DAILY_COLUMNS = (
    "date", "requests", "prompt_tokens", "completion_tokens", "total_tokens", "errors",
    "rate_limited",
    "cached_tokens",
)  # fmt: skip
TOTAL_COLUMNS = DAILY_COLUMNS[1:]
BY_CHOICES = ("model", "route")


@dataclasses.dataclass(frozen=True)
class _Listing:
    """Rows to print, the fields that JSON and CSV print, and the table's columns."""

    rows: list[dict[str, Any]]
    fields: Sequence[str]
    columns: Sequence[str]


def add_parser(commands: Any) -> None:
    usage = commands.add_parser(
        "usage",
        usage="gateway usage (--key-id KEY_ID | --owner OWNER | --model MODEL)\n"
        "                     [--daily | --by {model,route}]\n"
        "                     [--since DATE|TIME] [--until DATE|TIME] [--json | --csv]\n"
        "       gateway usage replay [FILE]\n"
        "       gateway usage rebuild-rollups --day YYYY-MM-DD",
        help="list usage: a key's records, or daily totals of a key, an owner or a model",
        description="Exactly one of --key-id, --owner, --model. --since/--until take a date "
        "(YYYY-MM-DD, the whole day, UTC) or an ISO 8601 time.",
    )
    whose = usage.add_mutually_exclusive_group()
    whose.add_argument("--key-id")
    whose.add_argument("--owner", help="every key of this owner (a key_id column is added)")
    whose.add_argument("--model", help="this model's daily totals over all keys")
    usage.add_argument("--since", type=argtypes.when, metavar="DATE|TIME")
    usage.add_argument("--until", type=argtypes.until, metavar="DATE|TIME")
    grouping = usage.add_mutually_exclusive_group()
    grouping.add_argument("--daily", action="store_true", help="daily totals, not raw records")
    grouping.add_argument(
        "--by",
        choices=BY_CHOICES,
        help="a key's (or each of an owner's keys') totals per model or per API route "
        "(chat, completions, embeddings) over the range",
    )
    output = usage.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="one JSON object per line")
    output.add_argument("--csv", action="store_true", help="CSV with a header row")
    usage.set_defaults(handler=_list, check=partial(_check, usage))
    repair.add_parsers(usage.add_subparsers(dest="usage_action", metavar="replay|rebuild-rollups"))


def _check(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """After parsing: the listing's options agree (else the parser's usage error, exit 2)."""
    if args.usage_action is None:
        try:
            _target(args)
            check_range(args.since, args.until)
        except CliError as exc:
            parser.error(str(exc))


def _target(args: argparse.Namespace) -> str:
    chosen = [name for name in ("key_id", "owner", "model") if getattr(args, name, None)]
    if len(chosen) != 1:
        raise CliError("give exactly one of --key-id, --owner, --model")
    if chosen[0] == "model" and getattr(args, "by", None):
        raise CliError("--by needs --key-id or --owner (--model gives one model's daily totals)")
    return chosen[0]


def _list(args: argparse.Namespace, ctx: Context) -> int:
    target = _target(args)
    query = ctx.usage_query()
    if target == "model":
        listing = _model_days(args, query)
    else:
        listing = _key_listing(args, ctx, query, target)
    _write(args, listing, target, ctx)
    return 0


def _days(args: argparse.Namespace) -> tuple[date | None, date | None]:
    start = args.since.astimezone(UTC).date() if args.since else None
    end = args.until.astimezone(UTC).date() if args.until else None
    return start, end


def _model_days(args: argparse.Namespace, query: UsageQuery) -> _Listing:
    start, end = _days(args)
    days = query.model_days(model=args.model, start=start, end=end)
    columns = ("model", *DAILY_COLUMNS)
    return _Listing([{"model": args.model, **d.to_dict()} for d in days], columns, columns)


def _key_listing(
    args: argparse.Namespace, ctx: Context, query: UsageQuery, target: str
) -> _Listing:
    """A key's, or each of an owner's keys': records, daily totals or grouped totals."""
    if target == "key_id":
        key_ids = [args.key_id]
    else:
        key_ids = [k.key_id for k in ctx.key_store().list(owner=args.owner)]
    start, end = _days(args)
    if args.by:
        rows = [
            {"key_id": key_id, **t.to_dict()}
            for key_id in key_ids
            for t in query.key_grouped(key_id=key_id, group_by=args.by, start=start, end=end)
        ]
        listing = _Listing(rows, ("key_id", args.by, *TOTAL_COLUMNS), (args.by, *TOTAL_COLUMNS))
    elif args.daily:
        rows = [
            {"key_id": key_id, **d.to_dict()}
            for key_id in key_ids
            for d in query.key_days(key_id=key_id, start=start, end=end)
        ]
        listing = _Listing(rows, ("key_id", *DAILY_COLUMNS), DAILY_COLUMNS)
    else:
        listing = _Listing(_records(args, ctx, key_ids), RECORD_FIELDS, USAGE_COLUMNS)
    if target == "owner":
        return dataclasses.replace(listing, columns=("key_id", *listing.columns))
    return listing


def _records(args: argparse.Namespace, ctx: Context, key_ids: list[str]) -> list[dict[str, Any]]:
    usage = ctx.usage_store()
    return [
        r.to_json()
        for key_id in key_ids
        for r in usage.query(key_id=key_id, since=args.since, until=args.until)
    ]


def _write(args: argparse.Namespace, listing: _Listing, target: str, ctx: Context) -> None:
    rows, fields, out = listing.rows, listing.fields, ctx.out
    if args.json:
        for row in rows:
            out.write(json.dumps(row) + "\n")
    elif args.csv:
        writer = csv.DictWriter(out, fieldnames=fields, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    else:
        print_table(rows, listing.columns, out)
        if target == "model" or args.daily or args.by:
            ctx.err.write(
                "gateway: daily totals come from rollups, which lag requests by a few "
                "seconds (the usage aggregator)\n"
            )
        total = sum(int(row["total_tokens"]) for row in rows)
        requests = len(rows) if "requests" not in fields else sum(r["requests"] for r in rows)
        out.write(f"{requests} requests, {total} tokens\n")
