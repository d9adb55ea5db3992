"""`gateway tokens count`: registered here; the command itself is tokens_count.py."""

from __future__ import annotations

import argparse
from typing import Any

from gateway.cli import tokens_count as tokens_cli
from gateway.cli.common import Context


def add_parser(commands: Any) -> None:
    tokens_cli.add_parser(commands)
    commands.choices["tokens"].set_defaults(handler=_count)


def _count(args: argparse.Namespace, ctx: Context) -> int:
    return tokens_cli.count(args, settings=ctx.settings, out=ctx.out, stdin=ctx.stdin)
