"""`gateway`: manage API keys and read usage, against the tables in KEYS_TABLE/USAGE_TABLE.

Point it at a local DynamoDB with AWS_ENDPOINT_URL_DYNAMODB (as `make run` prints).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TextIO

from gateway.aws import AwsClients
from gateway.errors import DependencyError
from gateway.keys import KeyStore
from gateway.keys.store import KeyNotFoundError
from gateway.settings import Settings
from gateway.usage import UsageStore

KEY_COLUMNS = ("key_id", "name", "owner", "status", "created_at", "expires_at")
USAGE_COLUMNS = (
    "created_at", "request_id", "model", "status", "stream",
    "prompt_tokens", "completion_tokens", "total_tokens", "latency_ms",
)  # fmt: skip


def _models(value: str) -> tuple[str, ...]:
    return tuple(m.strip() for m in value.split(",") if m.strip())


def _when(value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {value!r}") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _positive(value: str) -> int:
    number = int(value)
    if number <= 0:
        raise argparse.ArgumentTypeError("must be a positive integer")
    return number


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gateway", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    keys = commands.add_parser("keys", help="manage API keys").add_subparsers(
        dest="action", required=True
    )
    create = keys.add_parser("create", help="create a key; prints its secret once")
    create.add_argument("--name", required=True)
    create.add_argument("--owner", default="default")
    create.add_argument("--models", type=_models, default=(), help="comma-separated allow-list")
    create.add_argument("--expires-in-days", type=_positive)
    listing = keys.add_parser("list", help="list keys (never their secrets)")
    listing.add_argument("--owner")
    listing.add_argument("--json", action="store_true")
    revoke = keys.add_parser("revoke", help="revoke a key")
    revoke.add_argument("key_id")

    usage = commands.add_parser("usage", help="list a key's usage records")
    usage.add_argument("--key-id", required=True)
    usage.add_argument("--since", type=_when)
    usage.add_argument("--until", type=_when)
    usage.add_argument("--json", action="store_true", help="one JSON object per line")
    return parser


def _print_table(rows: list[dict[str, Any]], columns: Sequence[str], out: TextIO) -> None:
    cells = [[str(row.get(c) if row.get(c) is not None else "-") for c in columns] for row in rows]
    widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]
    out.write("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip() + "\n")
    for row in cells:
        out.write("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() + "\n")


def run(args: argparse.Namespace, *, aws: AwsClients, settings: Settings, out: TextIO) -> int:
    keys = KeyStore(client=aws.dynamodb, table=settings.keys_table)
    if args.command == "keys":
        if args.action == "create":
            expires = (
                datetime.now(UTC) + timedelta(days=args.expires_in_days)
                if args.expires_in_days
                else None
            )
            key, secret = keys.create(
                name=args.name, owner=args.owner, models=args.models, expires_at=expires
            )
            out.write(json.dumps({"key": secret, **key.public_dict()}, indent=2) + "\n")
        elif args.action == "list":
            rows = [k.public_dict() for k in keys.list(owner=args.owner)]
            if args.json:
                out.write(json.dumps(rows, indent=2) + "\n")
            else:
                _print_table(rows, KEY_COLUMNS, out)
        elif args.action == "revoke":
            key = keys.revoke(key_id=args.key_id)
            out.write(json.dumps(key.public_dict(), indent=2) + "\n")
        return 0

    usage = UsageStore(
        client=aws.dynamodb,
        table=settings.usage_table,
        retention_days=settings.usage_retention_days,
    )
    records = usage.query(key_id=args.key_id, since=args.since, until=args.until)
    rows = [r.to_json() for r in records]
    if args.json:
        for row in rows:
            out.write(json.dumps(row) + "\n")
    else:
        _print_table(rows, USAGE_COLUMNS, out)
        total = sum(r.total_tokens for r in records)
        out.write(f"{len(records)} requests, {total} tokens\n")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run(args, aws=AwsClients(), settings=Settings(), out=sys.stdout)
    except KeyNotFoundError as exc:
        sys.stderr.write(f"gateway: no key with key_id {exc}\n")
        return 1
    except DependencyError as exc:
        sys.stderr.write(f"gateway: {exc.message}\n")
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
