"""`gateway usage replay` (write records that were logged as unwritten) and `gateway usage
rebuild-rollups` (recompute a day's rollups from its raw records)."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TextIO

from gateway.cli import argtypes
from gateway.cli.common import CliError, Context, Progress, print_json
from gateway.usage.rebuild import rebuild_day
from gateway.usage.replay import replay


def add_parsers(usage_actions: Any) -> None:
    """`replay` and `rebuild-rollups` under `gateway usage`."""
    replay_parser = usage_actions.add_parser(
        "replay",
        help="write usage records that were logged as usage_record_unwritten",
        description="Reads log lines (JSON, one object per line) and writes every "
        "`usage_record_unwritten` record again; idempotent on the request id.",
    )
    replay_parser.add_argument("file", nargs="?", default="-", help="log file (default stdin)")
    replay_parser.add_argument("--json", action="store_true", help="the summary as JSON")
    replay_parser.set_defaults(handler=_replay)
    rebuild = usage_actions.add_parser(
        "rebuild-rollups",
        help="recompute a day's rollups exactly from its raw records",
        description="Scans the usage table for the day's raw records (progress on stderr) "
        "and rewrites each rollup of that day that differs from their sums. Rollups lag "
        "requests by seconds (the aggregator); records it has not reached are left to it.",
    )
    rebuild.add_argument("--day", required=True, type=argtypes.day, metavar="YYYY-MM-DD")
    rebuild.set_defaults(handler=_rebuild)


def _rebuild(args: argparse.Namespace, ctx: Context) -> int:
    def progress(line: str) -> None:
        ctx.err.write(f"gateway: {line}\n")

    summary = rebuild_day(
        ctx.aws.dynamodb, table=ctx.settings.usage_table, day=args.day, progress=progress
    )
    ctx.out.write(f"{args.day}: {summary}\n")
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


def _replay(args: argparse.Namespace, ctx: Context) -> int:
    err = ctx.err
    with _lines(args.file, ctx.stdin) as lines:
        progress = Progress("replay", err=err, unit="lines read")
        summary = replay(progress.track(lines), ctx.usage_store())
    for number, reason in summary.invalid:
        err.write(f"gateway: line {number}: usage_record_unwritten with {reason}; skipped\n")
    for number, reason in summary.failed:
        err.write(f"gateway: line {number}: not written ({reason}); skipped\n")
    if args.json:
        fields = ("replayed", "already_present", "skipped")
        report: dict[str, Any] = {name: getattr(summary, name) for name in fields}
        report.update(failed=len(summary.failed), unreadable=len(summary.invalid))
        print_json(report, ctx.out)
    else:
        ctx.out.write(f"{summary}\n")
    if summary.failed:
        err.write("gateway: run the replay again for the failed lines: it is idempotent\n")
    return 0 if summary.ok else 1
