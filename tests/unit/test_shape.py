"""The code's shape (issue 12): no module in functions/ over 300 lines, no function over 50
(from its first decorator to its last line, docstring included). Parsing ~100 files with
`ast` takes a fraction of a second."""

from __future__ import annotations

import ast
from pathlib import Path

FUNCTIONS = Path(__file__).resolve().parents[2] / "functions"
MODULE_LINES = 300
FUNCTION_LINES = 50


def _functions(
    node: ast.AST, prefix: str = ""
) -> list[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]]:
    found: list[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]] = []
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
            found.append((prefix + child.name, child))
            found.extend(_functions(child, f"{prefix}{child.name}."))
        elif isinstance(child, ast.ClassDef):
            found.extend(_functions(child, f"{prefix}{child.name}."))
    return found


def _too_long(root: Path) -> dict[str, int]:
    """Modules and functions under `root` over the limits, with their lengths in lines."""
    long: dict[str, int] = {}
    for path in sorted(root.rglob("*.py")):
        name = path.relative_to(root).as_posix()
        source = path.read_text(encoding="utf-8")
        if (lines := len(source.splitlines())) > MODULE_LINES:
            long[name] = lines
        for qualname, function in _functions(ast.parse(source)):
            first = min([function.lineno, *(d.lineno for d in function.decorator_list)])
            assert function.end_lineno is not None
            if (length := function.end_lineno - first + 1) > FUNCTION_LINES:
                long[f"{name}:{qualname}"] = length
    return long


def test_no_module_or_function_over_the_limits() -> None:
    assert FUNCTIONS.is_dir()
    long = _too_long(FUNCTIONS)
    assert not long, f"over {MODULE_LINES} lines per module or {FUNCTION_LINES} per function"


def test_the_check_finds_what_is_over(tmp_path: Path) -> None:
    def function(name: str, lines: int) -> str:  # `lines` lines long, with its def
        return f"def {name}():\n" + "".join(f"    x = {i}\n" for i in range(lines - 1))

    (tmp_path / "ok.py").write_text(function("fits", FUNCTION_LINES))
    (tmp_path / "long.py").write_text(
        "class C:\n    @staticmethod\n"
        + "".join("    " + line + "\n" for line in function("m", FUNCTION_LINES).splitlines())
        + "\n" * (MODULE_LINES - FUNCTION_LINES)
    )
    assert _too_long(tmp_path) == {
        "long.py": MODULE_LINES + 2,
        "long.py:C.m": FUNCTION_LINES + 1,  # its decorator counts
    }
