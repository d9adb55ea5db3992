"""`python -m devstack.coldstart` (`make bench-coldstart`): the command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from devstack.coldstart import run_coldstart
from devstack.coldstart.measure import (
    DEFAULT_MODELS,
    DEFAULT_OUT,
    DEFAULT_TOKENIZERS,
    FUNCTIONS,
    Config,
)
from devstack.coldstart.report import render_markdown, write_results


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m devstack.coldstart",
        description="Time each Lambda function's init (imports, app build, tokenizers) in "
        "fresh processes.",
    )
    parser.add_argument("--runs", type=int, default=7, help="runs per scenario and mode")
    parser.add_argument("--tokenizers-dir", type=Path, default=DEFAULT_TOKENIZERS)
    parser.add_argument(
        "--models",
        default=",".join(DEFAULT_MODELS.values()),
        help="tokenizer folders to preload (comma-separated)",
    )
    parser.add_argument(
        "--functions",
        type=Path,
        default=FUNCTIONS,
        help="the functions/ directory to measure, e.g. another commit's (git archive)",
    )
    parser.add_argument("--no-importtime", action="store_true", help="skip -X importtime")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="markdown file to write")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    folders = [f.strip() for f in args.models.split(",") if f.strip()]
    config = Config(
        runs=args.runs,
        tokenizers_dir=args.tokenizers_dir.resolve(),
        models={folder: folder for folder in folders},
        importtime=not args.no_importtime,
        functions=args.functions.resolve(),
    )

    def progress(message: str) -> None:
        sys.stdout.write(f">> {message}\n")
        sys.stdout.flush()

    result = run_coldstart(config, progress)
    markdown = render_markdown(result)
    sys.stdout.write("\n" + markdown)
    path = write_results(markdown, args.out)
    progress(f"written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
