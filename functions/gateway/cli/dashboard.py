"""`gateway dashboard`: registered here; the command itself is gateway/dashboard/command.py."""

from __future__ import annotations

import argparse
from typing import Any

from gateway.cli.common import Context
from gateway.dashboard.command import add_dashboard_parser, run_dashboard


def add_parser(commands: Any) -> None:
    add_dashboard_parser(commands)
    commands.choices["dashboard"].set_defaults(handler=_serve)


def _serve(args: argparse.Namespace, ctx: Context) -> int:
    return run_dashboard(args, aws=ctx.aws, settings=ctx.settings, err=ctx.err)
