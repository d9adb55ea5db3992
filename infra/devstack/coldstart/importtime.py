"""Where the import time goes: `python -X importtime`, self time summed per top-level
package, with the module that first imported each package."""

from __future__ import annotations

import re
import subprocess
from collections import defaultdict

from devstack.coldstart.measure import ROOT, SCENARIOS, Config, child_env

_IMPORTTIME = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \| (\s*)(\S+)")


# One `-X importtime` line: (self microseconds, nesting depth, module).
_Row = tuple[int, int, str]


def _rows(text: str) -> list[_Row]:
    rows = []
    for line in text.splitlines():
        m = _IMPORTTIME.match(line)
        if m:
            rows.append((int(m.group(1)), len(m.group(3)), m.group(4)))
    return rows


def _package(name: str) -> str:
    if name == "gateway.lambdas.api":
        return "gateway.lambdas.api (app build)"
    return name.split(".")[0]


def _importer(rows: list[_Row], index: int) -> int | None:
    """The row of the module that imported row ``index`` (the next one less nested)."""
    depth = rows[index][1]
    for j in range(index + 1, len(rows)):
        if rows[j][1] < depth:
            return j
    return None


def _outside_importer(rows: list[_Row], index: int) -> str:
    """The first module outside row ``index``'s package on its chain of importers."""
    pkg = _package(rows[index][2])
    j = _importer(rows, index)
    while j is not None and _package(rows[j][2]) == pkg:
        j = _importer(rows, j)
    return rows[j][2] if j is not None else "-"


def import_offenders(text: str, top: int = 12) -> tuple[list[tuple[str, float, str]], float]:
    """Self time per top-level package from `-X importtime` output (microseconds per module,
    children printed before their importer, nesting by indentation), with the module that
    first imported the package from outside it. The handler module's own line is the app
    build (create_app runs while it is imported)."""
    rows = _rows(text)
    self_us: dict[str, int] = defaultdict(int)
    first_importer: dict[str, str] = {}
    for index, (micros, _, name) in enumerate(rows):
        pkg = _package(name)
        self_us[pkg] += micros
        if pkg not in first_importer:
            first_importer[pkg] = _outside_importer(rows, index)
    total_ms = sum(self_us.values()) / 1000
    ranked = sorted(self_us.items(), key=lambda item: -item[1])[:top]
    return [(pkg, us / 1000, first_importer[pkg]) for pkg, us in ranked], total_ms


def importtime(config: Config) -> tuple[list[tuple[str, float, str]], float]:
    env = child_env(config, SCENARIOS[1])  # ApiFunction, tracing on
    result = subprocess.run(
        [config.python, "-X", "importtime", "-c", "import gateway.lambdas.api"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    return import_offenders(result.stderr)
