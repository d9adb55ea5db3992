"""`gateway`: manage API keys and read usage, against the tables in KEYS_TABLE/USAGE_TABLE;
`gateway tokens count` audits a prompt count (docs/TOKENS.md).

Point it at a local DynamoDB with AWS_ENDPOINT_URL_DYNAMODB (as `make run` prints).
docs/USAGE.md describes the tables and every command.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TextIO

from botocore.exceptions import BotoCoreError

from gateway.aws import AwsClients, ConditionFailed
from gateway.cli import completion, dashboard, endpoints, keys, tokens, usage
from gateway.cli.common import (
    EXIT_CODES,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    CliError,
    Context,
    quiet_broken_pipe,
)
from gateway.cli.keys import KEY_COLUMNS
from gateway.cli.tokens_count import TokensCliError
from gateway.errors import DependencyError
from gateway.keys.store import KeyNotFoundError
from gateway.settings import Settings

__all__ = ["KEY_COLUMNS", "build_parser", "main", "parse_args", "run"]

# The command groups, in `gateway --help`'s order. A group is a module whose
# `add_parser(subparsers)` adds its parser(s), each with `set_defaults(handler=f)` where
# `f(args, ctx: Context) -> int` runs it (and optionally `check=g`, `g(args)` called after
# parsing, which may call the parser's error()). A handler reports a refusal by raising
# CliError (one line on stderr, exit status 1). A new group is one more entry here.
COMMANDS = (keys, usage, dashboard, completion, tokens, endpoints)


def build_parser() -> argparse.ArgumentParser:
    """The `gateway` parser with every command group of COMMANDS."""
    parser = argparse.ArgumentParser(
        prog="gateway",
        description=__doc__,
        epilog="exit status: "
        + "; ".join(f"{code} {what}" for code, what in EXIT_CODES.items())
        + ". Shell completion: source <(gateway completion bash).",
    )
    subparsers = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_parser(subparsers)
    # The whole tree, for the commands that describe it (completion), passed down.
    parser.set_defaults(command_tree=parser)
    return parser


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    args = build_parser().parse_args(argv)
    check = getattr(args, "check", None)
    if check is not None:
        check(args)
    return args


def run(
    args: argparse.Namespace,
    *,
    aws: AwsClients,
    settings: Settings,
    out: TextIO,
    err: TextIO | None = None,
    stdin: TextIO | None = None,
) -> int:
    """Run a parsed command (its `handler`)."""
    ctx = Context(
        aws=aws, settings=settings, out=out, err=err or sys.stderr, stdin=stdin or sys.stdin
    )
    code: int = args.handler(args, ctx)
    return code


def main(
    argv: Sequence[str] | None = None,
    *,
    aws: AwsClients | None = None,
    settings: Settings | None = None,
) -> int:
    args = parse_args(argv)
    clients = aws or AwsClients()
    try:
        code = run(args, aws=clients, settings=settings or Settings(), out=sys.stdout)
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
    except (CliError, TokensCliError) as exc:
        sys.stderr.write(f"gateway: {exc}\n")
    except BotoCoreError as exc:  # e.g. no region configured, found when the client is built
        sys.stderr.write(f"gateway: AWS configuration: {exc}\n")
    finally:
        if aws is None:  # the clients built here: their pooled sockets closed, not left to gc
            clients.close_connections()
    return EXIT_FAILED
