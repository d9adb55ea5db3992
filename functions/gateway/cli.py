"""`gateway`: manage API keys and read usage, against the tables in KEYS_TABLE/USAGE_TABLE;
`gateway tokens count` audits a prompt count (docs/TOKENS.md).

Point it at a local DynamoDB with AWS_ENDPOINT_URL_DYNAMODB (as `make run` prints).
docs/USAGE.md describes the tables and every command.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, TextIO

from botocore.exceptions import BotoCoreError

from gateway.aws import AwsClients, ConditionFailed
from gateway.backends import endpoints_cli
from gateway.clitools import (
    EXIT_CODES,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    CliError,
    Progress,
    check_models,
    check_range,
    completion_script,
    quiet_broken_pipe,
)
from gateway.errors import DependencyError
from gateway.keys import ApiKey, KeyStore
from gateway.keys.store import KeyNotFoundError
from gateway.limits import LimitStore
from gateway.settings import Settings
from gateway.tokens import cli as tokens_cli
from gateway.usage import UsageRecord, UsageStore
from gateway.usage.query import ModelTotals, RouteTotals, UsageQuery, month_usage, utc_today
from gateway.usage.rebuild import rebuild_day
from gateway.usage.replay import replay

KEY_COLUMNS = ("key_id", "name", "owner", "status", "created_at", "expires_at")
USAGE_COLUMNS = (
    "created_at", "request_id", "model", "status", "stream",
    "prompt_tokens", "completion_tokens", "total_tokens", "latency_ms",
)  # fmt: skip
# Every field of a raw record, as `--json` and `--csv` print it.
RECORD_FIELDS = (*(f.name for f in dataclasses.fields(UsageRecord)), "total_tokens")
DAILY_COLUMNS = (
    "date", "requests", "prompt_tokens", "completion_tokens", "total_tokens", "errors",
)  # fmt: skip
TOTAL_COLUMNS = DAILY_COLUMNS[1:]
BY_CHOICES = ("model", "route")
LIMITS = ("rpm", "tpm", "monthly_tokens")


def _models(value: str) -> tuple[str, ...]:
    return tuple(m.strip() for m in value.split(",") if m.strip())


def _date_only(value: str) -> date | None:
    try:
        return date.fromisoformat(value) if len(value) == 10 else None
    except ValueError:
        return None


def _when(value: str) -> datetime:
    """An ISO 8601 time (UTC unless it says otherwise), or a date: its first instant."""
    day = _date_only(value)
    if day is not None:
        return datetime.combine(day, time(), tzinfo=UTC)
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 date or time: {value!r}") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _until(value: str) -> datetime:
    """Like _when, but a date means the whole day (its last millisecond)."""
    day = _date_only(value)
    if day is not None:
        return datetime.combine(day, time(23, 59, 59, 999000), tzinfo=UTC)
    return _when(value)


def _day(value: str) -> date:
    day = _date_only(value)
    if day is None:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {value!r}")
    return day


def _positive(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {value!r}") from None
    if number <= 0:
        raise argparse.ArgumentTypeError("must be a positive integer")
    return number


def _limit(value: str) -> int | None:
    """A positive integer, or `none` for no limit."""
    return None if value.strip().lower() == "none" else _positive(value)


def _add_limits(parser: argparse.ArgumentParser, **kwargs: Any) -> None:
    for name, what in (
        ("rpm", "requests per minute"),
        ("tpm", "tokens per minute"),
        ("monthly-tokens", "tokens per UTC month"),
    ):
        parser.add_argument(
            f"--{name}", type=_limit, metavar="N|none", help=f"{what} (none: unlimited)", **kwargs
        )


def build_parser() -> argparse.ArgumentParser:
    return _build_parsers()[0]


def _build_parsers() -> tuple[argparse.ArgumentParser, argparse.ArgumentParser]:
    """The `gateway` parser and its `usage` subparser (whose errors parse_args reports)."""
    parser = argparse.ArgumentParser(
        prog="gateway",
        description=__doc__,
        epilog="exit status: "
        + "; ".join(f"{code} {what}" for code, what in EXIT_CODES.items())
        + ". Shell completion: source <(gateway completion bash).",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    keys = commands.add_parser("keys", help="manage API keys").add_subparsers(
        dest="action", required=True
    )
    create = keys.add_parser("create", help="create a key; prints its secret once")
    create.add_argument("--name", required=True)
    create.add_argument("--owner", default="default")
    create.add_argument("--models", type=_models, default=(), help="comma-separated allow-list")
    create.add_argument("--expires-in-days", type=_positive)
    _add_limits(create)
    _add_model_check(create)
    listing = keys.add_parser("list", help="list keys (never their secrets)")
    listing.add_argument("--owner")
    listing.add_argument("--json", action="store_true", help="a JSON array, not a table")
    revoke = keys.add_parser("revoke", help="revoke a key")
    revoke.add_argument("key_id")

    # Options left out are left alone (SUPPRESS: absent from the namespace).
    update = keys.add_parser(
        "update",
        help="change a key's name, models, expiry or limits",
        argument_default=argparse.SUPPRESS,
    )
    update.add_argument("key_id")
    update.add_argument("--name")
    models = update.add_mutually_exclusive_group()
    models.add_argument("--models", type=_models, help="comma-separated allow-list")
    models.add_argument("--all-models", action="store_true", help="allow every model")
    expiry = update.add_mutually_exclusive_group()
    expiry.add_argument("--expires-in-days", type=_positive, help="expire N days from now")
    expiry.add_argument("--no-expiry", action="store_true", help="never expire")
    _add_limits(update)
    _add_model_check(update)
    rotate = keys.add_parser("rotate", help="a new secret for a key; the old one stops working")
    rotate.add_argument("key_id")
    show = keys.add_parser("show", help="a key's settings and its usage this UTC month")
    show.add_argument("key_id")
    for name in ("create", "revoke", "update", "rotate", "show"):
        keys.choices[name].add_argument(
            "--json", action="store_true", default=False, help="JSON output (the default)"
        )

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
    usage.add_argument("--since", type=_when, metavar="DATE|TIME")
    usage.add_argument("--until", type=_until, metavar="DATE|TIME")
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
    usage_actions = usage.add_subparsers(dest="usage_action", metavar="replay|rebuild-rollups")
    replay_parser = usage_actions.add_parser(
        "replay",
        help="write usage records that were logged as usage_record_unwritten",
        description="Reads log lines (JSON, one object per line) and writes every "
        "`usage_record_unwritten` record again; idempotent on the request id.",
    )
    replay_parser.add_argument("file", nargs="?", default="-", help="log file (default stdin)")
    replay_parser.add_argument("--json", action="store_true", help="the summary as JSON")
    rebuild = usage_actions.add_parser(
        "rebuild-rollups",
        help="recompute a day's rollups exactly from its raw records",
        description="Scans the usage table for the day's raw records (progress on stderr) "
        "and rewrites each rollup of that day that differs from their sums. Rollups lag "
        "requests by seconds (the aggregator); records it has not reached are left to it.",
    )
    rebuild.add_argument("--day", required=True, type=_day, metavar="YYYY-MM-DD")
    _add_extra_commands(commands)
    tokens_cli.add_parser(commands)
    endpoints_cli.add_parser(commands)
    return parser, usage


def _add_model_check(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--allow-unknown-models",
        action="store_true",
        default=False,
        help="accept --models ids that the models config does not have",
    )


def _add_extra_commands(commands: Any) -> None:
    from gateway.dashboard.command import add_dashboard_parser

    add_dashboard_parser(commands)
    completion = commands.add_parser(
        "completion",
        help="print a shell completion script",
        description="Enable with: source <(gateway completion bash), or add that line to "
        "~/.bashrc (zsh: source <(gateway completion zsh) in ~/.zshrc).",
    )
    completion.add_argument("shell", choices=("bash", "zsh"))


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser, usage = _build_parsers()
    args = parser.parse_args(argv)
    if args.command == "usage" and args.usage_action is None:
        try:
            _usage_target(args)
            check_range(args.since, args.until)
        except CliError as exc:
            usage.error(str(exc))
    return args


def _usage_target(args: argparse.Namespace) -> str:
    chosen = [name for name in ("key_id", "owner", "model") if getattr(args, name, None)]
    if len(chosen) != 1:
        raise CliError("give exactly one of --key-id, --owner, --model")
    if chosen[0] == "model" and getattr(args, "by", None):
        raise CliError("--by needs --key-id or --owner (--model gives one model's daily totals)")
    return chosen[0]


def _print_table(rows: list[dict[str, Any]], columns: Sequence[str], out: TextIO) -> None:
    cells = [[str(row.get(c) if row.get(c) is not None else "-") for c in columns] for row in rows]
    widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]
    out.write("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip() + "\n")
    for row in cells:
        out.write("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() + "\n")


def _print_json(value: Any, out: TextIO) -> None:
    out.write(json.dumps(value, indent=2) + "\n")


def run(
    args: argparse.Namespace,
    *,
    aws: AwsClients,
    settings: Settings,
    out: TextIO,
    err: TextIO | None = None,
    stdin: TextIO | None = None,
) -> int:
    err = err or sys.stderr
    if args.command == "completion":
        out.write(completion_script(build_parser(), args.shell))
        return 0
    if args.command == "dashboard":
        from gateway.dashboard.command import run_dashboard

        return run_dashboard(args, aws=aws, settings=settings, err=err)
    if args.command == "tokens":
        return tokens_cli.count(args, settings=settings, out=out, stdin=stdin)
    if args.command == "endpoints":
        return endpoints_cli.run(args, aws=aws, settings=settings, out=out)
    if args.command == "keys":
        models = getattr(args, "models", None)
        if models and not getattr(args, "allow_unknown_models", False):
            check_models(models, settings, read_ssm_parameter=aws.read_ssm_parameter, err=err)
        keys = KeyStore(client=aws.dynamodb, table=settings.keys_table)
        return _keys(args, keys, aws=aws, settings=settings, out=out)
    usage = UsageStore(
        client=aws.dynamodb,
        table=settings.usage_table,
        retention_days=settings.usage_retention_days,
    )
    if args.usage_action == "replay":
        return _replay(args, usage, out=out, err=err, stdin=stdin or sys.stdin)
    if args.usage_action == "rebuild-rollups":
        return _rebuild(args.day, aws=aws, settings=settings, out=out, err=err)
    query = UsageQuery(client=aws.dynamodb, table=settings.usage_table)
    keys = KeyStore(client=aws.dynamodb, table=settings.keys_table)
    return _usage(args, usage, query, keys, out=out)


def _keys(
    args: argparse.Namespace, keys: KeyStore, *, aws: AwsClients, settings: Settings, out: TextIO
) -> int:
    if args.action == "create":
        expires = (
            datetime.now(UTC) + timedelta(days=args.expires_in_days)
            if args.expires_in_days
            else None
        )
        key, secret = keys.create(
            name=args.name,
            owner=args.owner,
            models=args.models,
            expires_at=expires,
            rpm=args.rpm,
            tpm=args.tpm,
            monthly_tokens=args.monthly_tokens,
        )
        _print_json({"key": secret, **key.public_dict()}, out)
    elif args.action == "list":
        rows = [k.public_dict() for k in keys.list(owner=args.owner)]
        if args.json:
            _print_json(rows, out)
        else:
            _print_table(rows, KEY_COLUMNS, out)
    elif args.action == "revoke":
        _print_json(keys.revoke(key_id=args.key_id).public_dict(), out)
    elif args.action == "update":
        key = keys.get(key_id=args.key_id)
        updated = dataclasses.replace(key, **_changes(args))
        keys.save(key=updated)
        _print_json(updated.public_dict(), out)
    elif args.action == "rotate":
        key, secret = keys.rotate(key_id=args.key_id)
        _print_json({"key": secret, **key.public_dict()}, out)
    elif args.action == "show":
        key = keys.get(key_id=args.key_id)
        query = UsageQuery(client=aws.dynamodb, table=settings.usage_table)
        limits = LimitStore(client=aws.dynamodb, table=settings.usage_table)
        _print_json(show_key(key, query, limits), out)
    return 0


def _changes(args: argparse.Namespace) -> dict[str, Any]:
    given = vars(args)
    changes: dict[str, Any] = {}
    if "name" in given:
        changes["name"] = args.name
    if "models" in given:
        if not args.models:
            raise CliError("--models needs at least one model (or use --all-models)")
        changes["models"] = tuple(sorted(set(args.models)))
    if "all_models" in given:
        changes["models"] = ()
    if "expires_in_days" in given:
        changes["expires_at"] = datetime.now(UTC) + timedelta(days=args.expires_in_days)
    if "no_expiry" in given:
        changes["expires_at"] = None
    for name in LIMITS:
        if name in given:
            changes[name] = given[name]
    if not changes:
        raise CliError(
            "nothing to update: give --name, --models/--all-models, "
            "--expires-in-days/--no-expiry, --rpm, --tpm or --monthly-tokens"
        )
    return changes


def show_key(
    key: ApiKey, query: UsageQuery, limits: LimitStore, *, today: date | None = None
) -> dict[str, Any]:
    """A key's public settings and its usage this UTC month: the sum of its daily rollups,
    and `used_tokens`/`remaining_tokens` as its monthly budget counts them."""
    today = today or utc_today()
    totals = query.key_month(key_id=key.key_id, day=today)
    month = month_usage(key, limits, today=today)
    return {
        **key.public_dict(),
        "usage_this_month": {"month": month.pop("month"), **totals.to_dict(), **month},
    }


def _days(args: argparse.Namespace) -> tuple[date | None, date | None]:
    start = args.since.astimezone(UTC).date() if args.since else None
    end = args.until.astimezone(UTC).date() if args.until else None
    return start, end


def _usage(
    args: argparse.Namespace,
    usage: UsageStore,
    query: UsageQuery,
    keys: KeyStore,
    *,
    out: TextIO,
) -> int:
    target = _usage_target(args)
    start, end = _days(args)
    rows: list[dict[str, Any]]
    fields: Sequence[str]
    columns: Sequence[str]
    if target == "model":
        days = query.model_days(model=args.model, start=start, end=end)
        rows = [{"model": args.model, **d.to_dict()} for d in days]
        fields = columns = ("model", *DAILY_COLUMNS)
    else:
        key_ids = (
            [args.key_id] if target == "key_id" else [k.key_id for k in keys.list(owner=args.owner)]
        )
        if args.by:
            rows = [
                {"key_id": key_id, **t.to_dict()}
                for key_id in key_ids
                for t in _grouped(query, args.by, key_id=key_id, start=start, end=end)
            ]
            fields, columns = ("key_id", args.by, *TOTAL_COLUMNS), (args.by, *TOTAL_COLUMNS)
        elif args.daily:
            rows = [
                {"key_id": key_id, **d.to_dict()}
                for key_id in key_ids
                for d in query.key_days(key_id=key_id, start=start, end=end)
            ]
            fields, columns = ("key_id", *DAILY_COLUMNS), DAILY_COLUMNS
        else:
            rows = [
                r.to_json()
                for key_id in key_ids
                for r in usage.query(key_id=key_id, since=args.since, until=args.until)
            ]
            fields, columns = RECORD_FIELDS, USAGE_COLUMNS
        if target == "owner":
            columns = ("key_id", *columns)

    if args.json:
        for row in rows:
            out.write(json.dumps(row) + "\n")
    elif args.csv:
        writer = csv.DictWriter(out, fieldnames=fields, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    else:
        _print_table(rows, columns, out)
        if target == "model" or args.daily or args.by:
            sys.stderr.write(
                "gateway: daily totals come from rollups, which lag requests by a few "
                "seconds (the usage aggregator)\n"
            )
        total = sum(int(row["total_tokens"]) for row in rows)
        requests = len(rows) if "requests" not in fields else sum(r["requests"] for r in rows)
        out.write(f"{requests} requests, {total} tokens\n")
    return 0


def _grouped(
    query: UsageQuery, by: str, *, key_id: str, start: date | None, end: date | None
) -> list[ModelTotals] | list[RouteTotals]:
    """A key's totals per model or per route over the range (the `mday#`/`rday#` rollups)."""
    if by == "model":
        return query.key_models(key_id=key_id, start=start, end=end)
    return query.key_routes(key_id=key_id, start=start, end=end)


def _rebuild(day: date, *, aws: AwsClients, settings: Settings, out: TextIO, err: TextIO) -> int:
    def progress(line: str) -> None:
        err.write(f"gateway: {line}\n")

    summary = rebuild_day(aws.dynamodb, table=settings.usage_table, day=day, progress=progress)
    out.write(f"{day}: {summary}\n")
    return 1 if summary.changed_meanwhile else 0


@contextmanager
def _lines(path: str, stdin: TextIO) -> Iterator[TextIO]:
    if path == "-":
        yield stdin
        return
    try:
        handle = open(path, encoding="utf-8", errors="replace")  # noqa: SIM115
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror or exc}") from exc
    with handle:
        yield handle


def _replay(
    args: argparse.Namespace, usage: UsageStore, *, out: TextIO, err: TextIO, stdin: TextIO
) -> int:
    with _lines(args.file, stdin) as lines:
        progress = Progress("replay", err=err, unit="lines read")
        summary = replay(progress.track(lines), usage)
    for number, reason in summary.invalid:
        err.write(f"gateway: line {number}: usage_record_unwritten with {reason}; skipped\n")
    for number, reason in summary.failed:
        err.write(f"gateway: line {number}: not written ({reason}); skipped\n")
    if args.json:
        fields = ("replayed", "already_present", "skipped")
        report: dict[str, Any] = {name: getattr(summary, name) for name in fields}
        report.update(failed=len(summary.failed), unreadable=len(summary.invalid))
        _print_json(report, out)
    else:
        out.write(f"{summary}\n")
    if summary.failed:
        err.write("gateway: run the replay again for the failed lines: it is idempotent\n")
    return 0 if summary.ok else 1


def main(
    argv: Sequence[str] | None = None,
    *,
    aws: AwsClients | None = None,
    settings: Settings | None = None,
) -> int:
    args = parse_args(argv)
    try:
        code = run(args, aws=aws or AwsClients(), settings=settings or Settings(), out=sys.stdout)
        sys.stdout.flush()  # here, where a closed pipe is caught, not at interpreter exit
        return code
    except BrokenPipeError:
        return quiet_broken_pipe()
    except KeyboardInterrupt:
        sys.stderr.write("\ngateway: interrupted\n")
        return EXIT_INTERRUPTED
    except KeyNotFoundError as exc:
        sys.stderr.write(f"gateway: no key with key_id {exc}\n")
    except DependencyError as exc:
        sys.stderr.write(f"gateway: {exc.message}\n")
    except ConditionFailed:
        sys.stderr.write(
            "gateway: the key changed while this ran (rotated or updated elsewhere); try again\n"
        )
    except (CliError, tokens_cli.TokensCliError) as exc:
        sys.stderr.write(f"gateway: {exc}\n")
    except BotoCoreError as exc:  # e.g. no region configured, found when the client is built
        sys.stderr.write(f"gateway: AWS configuration: {exc}\n")
    return EXIT_FAILED


if __name__ == "__main__":
    raise SystemExit(main())
