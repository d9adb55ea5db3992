"""What every `gateway` command shares: what a command runs with (Context), exit codes, quiet
ends of pipes, tables and JSON on stdout, progress on stderr, date ranges and model ids checked.

Exit codes (EXIT_CODES; docs/USAGE.md, "Exit codes"): 0 success; 1 refused or failed;
2 bad arguments; 130 interrupted; 141 stdout's reader went away (e.g. `| head`).
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TextIO, TypeVar

from gateway.aws import AwsClients
from gateway.errors import ConfigurationError
from gateway.keys import KeyStore
from gateway.models.registry import ModelRegistry
from gateway.settings import Settings
from gateway.usage import UsageStore
from gateway.usage.query import UsageQuery

EXIT_OK = 0
EXIT_FAILED = 1  # refused or failed: no such key, DynamoDB, unknown models, bad replay lines
EXIT_USAGE = 2  # arguments rejected by the parser: nothing was read or written
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT)
EXIT_BROKEN_PIPE = 141  # the reader went away, e.g. `| head` (128 + SIGPIPE, as for cat)

EXIT_CODES = {
    EXIT_OK: "success",
    EXIT_FAILED: "the command was refused or failed (one line on stderr says why)",
    EXIT_USAGE: "bad arguments, nothing done (the parser's message on stderr)",
    EXIT_INTERRUPTED: "interrupted with Ctrl-C",
    EXIT_BROKEN_PIPE: "stdout's reader closed it early, e.g. `| head` (silent)",
}

T = TypeVar("T")


class CliError(Exception):
    """A mistake or failure found after parsing: printed as one line, exit status 1."""


@dataclass(frozen=True)
class Context:
    """What a command's handler runs with: AWS clients, settings and the three streams."""

    aws: AwsClients
    settings: Settings
    out: TextIO
    err: TextIO
    stdin: TextIO

    def key_store(self) -> KeyStore:
        return KeyStore(client=self.aws.dynamodb, table=self.settings.keys_table)

    def usage_store(self) -> UsageStore:
        return UsageStore(
            client=self.aws.dynamodb,
            table=self.settings.usage_table,
            retention_days=self.settings.usage_retention_days,
        )

    def usage_query(self) -> UsageQuery:
        return UsageQuery(client=self.aws.dynamodb, table=self.settings.usage_table)


def print_table(rows: list[dict[str, Any]], columns: Sequence[str], out: TextIO) -> None:
    cells = [[str(row.get(c) if row.get(c) is not None else "-") for c in columns] for row in rows]
    widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]
    out.write("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip() + "\n")
    for row in cells:
        out.write("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() + "\n")


def print_json(value: Any, out: TextIO) -> None:
    out.write(json.dumps(value, indent=2) + "\n")


def quiet_broken_pipe() -> int:
    """After stdout's reader went away: point stdout at /dev/null, so the interpreter's
    final flush does not print a traceback (the Python docs' recipe, "Note on SIGPIPE")."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout is not a real file (tests): nothing to flush
        pass
    finally:
        os.close(devnull)
    return EXIT_BROKEN_PIPE


def check_range(since: datetime | None, until: datetime | None) -> None:
    """An inverted range is a mistake, not an empty answer."""
    if since is not None and until is not None and since > until:
        raise CliError(
            f"--since ({since.isoformat()}) is after --until ({until.isoformat()}): "
            "nothing can match"
        )


def check_models(
    models: Sequence[str],
    settings: Settings,
    *,
    read_ssm_parameter: Callable[[str], str],
    err: TextIO,
) -> None:
    """Refuse model ids that the models config does not have (a typo would leave a key
    that allows nothing); warn when there is no config to check against."""
    if not models:
        return
    try:
        registry = ModelRegistry.from_settings(settings, read_ssm_parameter=read_ssm_parameter)
    except ConfigurationError as exc:
        err.write(f"gateway: warning: model ids not checked: {exc}\n")
        return
    known = sorted(model.id for model in registry)
    if not known:
        err.write(
            "gateway: warning: model ids not checked: no models config (set MODELS_CONFIG, "
            "MODELS_CONFIG_FILE or MODELS_CONFIG_SSM_PARAMETER as the gateway has it)\n"
        )
        return
    unknown = sorted(set(models) - set(known))
    if unknown:
        raise CliError(
            f"unknown model id(s): {', '.join(unknown)}; the models config has "
            f"{', '.join(known)} (--allow-unknown-models to allow them anyway)"
        )


class Progress:
    """Progress of a long command, on stderr: one live line on a terminal (redrawn at most
    every `redraw` seconds), or a plain line every `interval` seconds elsewhere (a log,
    CI), and always a last line when it ends. Nothing goes to stdout, so piping the
    result stays clean."""

    def __init__(
        self,
        label: str,
        *,
        err: TextIO,
        unit: str = "items",
        total: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        interval: float = 5.0,
        redraw: float = 0.2,
    ) -> None:
        self.label = label
        self.unit = unit
        self.total = total
        self.count = 0
        self._err = err
        self._clock = clock
        self._tty = bool(getattr(err, "isatty", lambda: False)())
        self._every = redraw if self._tty else interval
        self._started = clock()
        self._shown = self._started
        self._drawn = False

    def text(self) -> str:
        elapsed = self._clock() - self._started
        done = f"{self.count:,}" + (f"/{self.total:,}" if self.total else "")
        percent = f" ({100 * self.count // self.total}%)" if self.total else ""
        return f"{self.label}: {done} {self.unit}{percent}, {elapsed:.0f}s"

    def advance(self, count: int = 1) -> None:
        self.count += count
        now = self._clock()
        if now - self._shown >= self._every:
            self._shown = now
            self._show()

    def _show(self) -> None:
        if self._tty:
            self._err.write("\r\x1b[K" + self.text())
            self._drawn = True
        else:
            self._err.write(self.text() + "\n")
        self._err.flush()

    def finish(self) -> None:
        """The last line, if any line was shown (a quick run stays silent)."""
        if self._drawn or (not self._tty and self._shown != self._started):
            self._err.write(("\r\x1b[K" if self._tty else "") + self.text() + ", done\n")
            self._err.flush()

    def track(self, items: Iterable[T]) -> Iterator[T]:
        """Yield `items`, advancing once per item, and finish at the end."""
        try:
            for item in items:
                yield item
                self.advance()
        finally:
            self.finish()
