"""The runnable examples in README.md and docs/*.md, found by reading the Markdown.

- `curl` commands (in sh/bash blocks; backslash continuations joined),
- Python blocks that build an OpenAI client (`OpenAI(`),
- `gateway ...` CLI commands (also `.venv/bin/gateway ...`), in sh/bash blocks.

A block that cannot run against `make run` offline says so on the line before its fence:
`<!-- example: not run offline: <reason> -->` (the reason is required). New examples are
picked up as they are written: nothing here lists them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

FENCE = re.compile(r"^```(\w*)\s*$")
MARKER = re.compile(r"<!--\s*example:\s*not run offline:\s*(.+?)\s*-->")
SHELL = {"sh", "bash", "shell", "console"}


@dataclass(frozen=True)
class Example:
    file: str
    line: int
    kind: str  # "curl", "python" or "cli"
    text: str
    skip: str | None = None  # why it cannot run offline

    @property
    def id(self) -> str:
        return f"{self.file}:{self.line}:{self.kind}"


def _commands(lines: list[str]) -> list[tuple[int, str]]:
    """(offset, command) per logical line: continuations joined, comments kept."""
    out: list[tuple[int, str]] = []
    current: list[str] = []
    start = 0
    for offset, line in enumerate(lines):
        if not current:
            start = offset
        stripped = line.rstrip()
        if stripped.endswith("\\"):
            current.append(stripped[:-1])
            continue
        current.append(stripped)
        out.append((start, " ".join(part.strip() for part in current)))
        current = []
    return out


def examples(root: Path, names: list[str]) -> list[Example]:
    found: list[Example] = []
    for name in names:
        path = root / name
        lines = path.read_text().splitlines()
        i = 0
        while i < len(lines):
            fence = FENCE.match(lines[i])
            if not fence:
                i += 1
                continue
            lang = fence.group(1)
            end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
            body = lines[i + 1 : end]
            before = "\n".join(lines[max(0, i - 2) : i])
            marker = MARKER.search(before)
            skip = marker.group(1) if marker else None
            if lang == "python" and any("OpenAI(" in line for line in body):
                found.append(Example(name, i + 2, "python", "\n".join(body), skip))
            elif lang in SHELL:
                for offset, command in _commands(body):
                    text = command.strip()
                    if text.startswith("curl "):
                        found.append(Example(name, i + 2 + offset, "curl", text, skip))
                    elif text.startswith(("gateway ", ".venv/bin/gateway ")):
                        found.append(Example(name, i + 2 + offset, "cli", text, skip))
            i = end + 1
    return found
