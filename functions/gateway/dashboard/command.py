"""`gateway dashboard`: serve the usage dashboard on this machine, with your AWS credentials."""

from __future__ import annotations

import argparse
import sys
import webbrowser
from typing import Any, TextIO

from gateway.aws import AwsClients
from gateway.settings import Settings

DEFAULT_PORT = 8765


def add_dashboard_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "dashboard",
        help="serve the usage dashboard on 127.0.0.1 (reads the rollups with your AWS credentials)",
        description="Serves a page with tokens and requests per day by key or model, the "
        "top keys and models, errors and rate-limited counts, each key's limits and monthly "
        "budget, and a CSV download. It reads the usage rollups (never a scan) with the AWS "
        "credentials of this shell. Ctrl-C stops it. docs/DASHBOARD.md.",
    )
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="default %(default)s")
    parser.add_argument("--owner", help="only this owner's keys")
    parser.add_argument("--open", action="store_true", help="open it in the browser")


def run_dashboard(
    args: argparse.Namespace, *, aws: AwsClients, settings: Settings, err: TextIO | None = None
) -> int:
    import uvicorn

    from gateway.dashboard.server import create_dashboard_app

    err = err or sys.stderr
    app = create_dashboard_app(aws=aws, settings=settings, owner=args.owner)
    url = f"http://127.0.0.1:{args.port}/"
    err.write(f"gateway dashboard: {url} (Ctrl-C to stop)\n")
    err.flush()
    if args.open:
        webbrowser.open(url)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")
    return 0
