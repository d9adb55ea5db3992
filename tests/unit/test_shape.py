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


# --- repeated code ---------------------------------------------------------------------
REPEAT_LINES = 6
_THIN = frozenset("()[]{},:;")


def _signature_lines(source: str) -> set[int]:
    """Lines of function signatures (`def` to the line before the body): declarations,
    alike wherever classes take the same injected clients."""
    lines: set[int] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            lines.update(range(node.lineno, node.body[0].lineno))
    return lines


def _code_lines(source: str) -> list[tuple[int, str]]:
    """(line number, line) of the lines that carry code: stripped, white space folded,
    without blank lines, comments, imports, lone punctuation and signatures."""
    signatures = _signature_lines(source)
    lines = []
    for number, line in enumerate(source.splitlines(), start=1):
        text = " ".join(line.split())
        if not text or text.startswith(("#", "import ", "from ")) or set(text) <= _THIN:
            continue
        if number not in signatures:
            lines.append((number, text))
    return lines


def _repeats(root: Path) -> list[tuple[str, str]]:
    """Places where REPEAT_LINES code lines in a row stand again, letter for letter."""
    first: dict[tuple[str, ...], str] = {}
    found: list[tuple[str, str]] = []
    for path in sorted(root.rglob("*.py")):
        lines = _code_lines(path.read_text(encoding="utf-8"))
        name = path.relative_to(root).as_posix()
        last = -1  # report a repeated run once, not once per window inside it
        for start in range(len(lines) - REPEAT_LINES + 1):
            window = tuple(text for _, text in lines[start : start + REPEAT_LINES])
            where = f"{name}:{lines[start][0]}"
            if window not in first:
                first[window] = where
            elif start > last:
                found.append((first[window], where))
                last = start + REPEAT_LINES - 1
    return found


def test_no_six_lines_of_code_stand_twice() -> None:
    """One piece of code serves where the logic is the same (issue 12). Only identical
    runs are caught here; same-shape declarations (pydantic fields, argparse calls) are
    not logic and are left to review (`duplicates --repo functions`)."""
    assert not _repeats(FUNCTIONS)


def test_the_repeat_check_finds_a_copied_block(tmp_path: Path) -> None:
    block = "".join(f"    total += item.value * {i}\n" for i in range(REPEAT_LINES))
    (tmp_path / "a.py").write_text("def f(item):\n    total = 0\n" + block)
    (tmp_path / "b.py").write_text("import os\n\n# copied\ndef g(item):\n" + block + "\n")
    (tmp_path / "c.py").write_text("def h(item):\n" + block[: block.rindex("    total")])
    signature = "def k(\n" + "".join(f"    a{i}: int,\n" for i in range(REPEAT_LINES)) + "):\n"
    (tmp_path / "d.py").write_text(signature + "    pass\n")
    (tmp_path / "e.py").write_text(signature + "    return 1\n")  # signatures do not count
    assert _repeats(tmp_path) == [("a.py:3", "b.py:5")]  # c.py's five lines do not count
