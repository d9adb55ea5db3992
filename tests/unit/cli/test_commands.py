"""The `gateway` command's registry (gateway.cli.COMMANDS): every command has a handler, and
a command group is registered by one entry."""

from __future__ import annotations

import argparse
import io
import types
from typing import Any, cast

import pytest
from gateway import cli
from gateway.aws import AwsClients
from gateway.cli.common import EXIT_FAILED, CliError, Context
from gateway.settings import Settings


def _leaves(
    parser: argparse.ArgumentParser, path: tuple[str, ...], inherited: Any
) -> list[tuple[tuple[str, ...], Any]]:
    """(command path, the handler it runs) for every command without subcommands."""
    handler = parser.get_default("handler") or inherited
    children: dict[str, argparse.ArgumentParser] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            children.update(action.choices)
    if not children:
        return [(path, handler)]
    return [
        leaf for name, child in children.items() for leaf in _leaves(child, (*path, name), handler)
    ]


def test_every_command_has_a_handler() -> None:
    leaves = dict(_leaves(cli.build_parser(), (), None))
    assert {"keys create", "keys show", "usage replay", "usage rebuild-rollups", "tokens count",
            "dashboard", "completion"} <= {" ".join(p) for p in leaves}  # fmt: skip
    assert all(callable(handler) for handler in leaves.values()), leaves


def _hello_group() -> types.SimpleNamespace:
    """A command group as another engineer would add one: `gateway hello NAME`."""

    def run(args: argparse.Namespace, ctx: Context) -> int:
        if args.name == "nobody":
            raise CliError("nobody to greet")
        ctx.out.write(f"hello {args.name} from {ctx.settings.keys_table}\n")
        return 0

    def add_parser(commands: Any) -> None:
        hello = commands.add_parser("hello", help="greet")
        hello.add_argument("name")
        hello.set_defaults(handler=run)

    return types.SimpleNamespace(add_parser=add_parser)


def test_a_group_is_registered_by_one_entry(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(cli, "COMMANDS", (*cli.COMMANDS, _hello_group()))
    settings = Settings(keys_table="keys-x")
    out = io.StringIO()
    args = cli.parse_args(["hello", "world"])
    no_aws = cast(AwsClients, object())  # the command makes no AWS call
    assert cli.run(args, aws=no_aws, settings=settings, out=out) == 0
    assert out.getvalue() == "hello world from keys-x\n"
    # Its CliError is reported as every command's: one line on stderr, exit status 1.
    assert cli.main(["hello", "nobody"], aws=no_aws, settings=settings) == EXIT_FAILED
    assert capsys.readouterr().err == "gateway: nobody to greet\n"
    assert "hello" in cli.completion.completion_script(cli.build_parser(), "bash")
