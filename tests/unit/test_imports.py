"""The import structure (issue 23): no module of the gateway takes part in an import cycle,
counting imports made only for type checking. The layers themselves are import-linter's
contract in pyproject.toml (`make check` runs `lint-imports`), drawn in
docs/ARCHITECTURE.md."""

from __future__ import annotations

import sys
from pathlib import Path

import grimp

FUNCTIONS = Path(__file__).resolve().parents[2] / "functions"


def cycles(imports: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in imports.get(node, ()):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(imports):
        if node not in index:
            visit(node)
    return found


def gateway_imports() -> dict[str, set[str]]:
    sys.path.insert(0, str(FUNCTIONS))
    try:
        graph = grimp.build_graph("gateway", include_external_packages=False)
    finally:
        sys.path.remove(str(FUNCTIONS))
    return {m: set(graph.find_modules_directly_imported_by(m)) for m in graph.modules}


def test_no_module_takes_part_in_an_import_cycle() -> None:
    assert cycles(gateway_imports()) == []


def test_the_check_finds_a_cycle() -> None:
    imports = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert cycles(imports) == [["a", "b", "c"]]
