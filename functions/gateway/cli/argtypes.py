"""Argument types and option groups that several `gateway` commands take."""

from __future__ import annotations

import argparse
from datetime import UTC, date, datetime, time
from typing import Any


def models(value: str) -> tuple[str, ...]:
    """A comma-separated list of model ids."""
    return tuple(m.strip() for m in value.split(",") if m.strip())


def _date_only(value: str) -> date | None:
    try:
        return date.fromisoformat(value) if len(value) == 10 else None
    except ValueError:
        return None


def when(value: str) -> datetime:
    """An ISO 8601 time (UTC unless it says otherwise), or a date: its first instant."""
    day = _date_only(value)
    if day is not None:
        return datetime.combine(day, time(), tzinfo=UTC)
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 date or time: {value!r}") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def until(value: str) -> datetime:
    """Like `when`, but a date means the whole day (its last millisecond)."""
    day = _date_only(value)
    if day is not None:
        return datetime.combine(day, time(23, 59, 59, 999000), tzinfo=UTC)
    return when(value)


def day(value: str) -> date:
    parsed = _date_only(value)
    if parsed is None:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {value!r}")
    return parsed


def positive(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {value!r}") from None
    if number <= 0:
        raise argparse.ArgumentTypeError("must be a positive integer")
    return number


def limit(value: str) -> int | None:
    """A positive integer, or `none` for no limit."""
    return None if value.strip().lower() == "none" else positive(value)


def add_limits(parser: argparse.ArgumentParser, **kwargs: Any) -> None:
    """--rpm, --tpm and --monthly-tokens (each N or none)."""
    for name, what in (
        ("rpm", "requests per minute"),
        ("tpm", "tokens per minute"),
        ("monthly-tokens", "tokens per UTC month"),
    ):
        parser.add_argument(
            f"--{name}", type=limit, metavar="N|none", help=f"{what} (none: unlimited)", **kwargs
        )


def add_model_check(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--allow-unknown-models",
        action="store_true",
        default=False,
        help="accept --models ids that the models config does not have",
    )
