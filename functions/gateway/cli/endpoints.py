"""`gateway endpoints list|probe`: registered here; the command itself is
gateway/backends/endpoints_cli.py."""

from __future__ import annotations

import argparse
from typing import Any

from gateway.backends import endpoints_cli
from gateway.cli.common import Context


def add_parser(commands: Any) -> None:
    endpoints_cli.add_parser(commands)
    commands.choices["endpoints"].set_defaults(handler=_run)


def _run(args: argparse.Namespace, ctx: Context) -> int:
    return endpoints_cli.run(args, aws=ctx.aws, settings=ctx.settings, out=ctx.out)
