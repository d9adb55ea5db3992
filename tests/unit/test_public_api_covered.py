"""The unit tier covers the public API of the request path (issue 12): every public
function, method and property of the services, the meter and the decoders is named by at
least one unit test that imports its module (or its package), found with `ast`. A new
public function without a unit test fails here, naming it."""

from __future__ import annotations

import ast
import functools
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GATEWAY = ROOT / "functions" / "gateway"
UNIT = ROOT / "tests" / "unit"
COVERED = (
    "pipeline/pipeline.py",
    "pipeline/sse.py",
    "pipeline/events.py",
    "chat/service.py",
    "chat/stream.py",
    "completions/service.py",
    "embeddings/service.py",
    "metering/meter.py",
    "metering/generated.py",
    "backends/sse.py",
    "backends/wire.py",
    "backends/chunks.py",
)
# Dunder methods and Protocol declarations are not functions of their own.
_SKIP_CLASSES = ("RecordSink", "Telemetry", "EventStream")
# A surface's implementations of the pipeline's Surface protocol are called by the
# pipeline, and covered by the surface's tests through it (tests/unit/*/test_service.py
# run every request through Pipeline.run); the protocol's methods are listed here.
_SURFACE_METHODS = frozenset(
    {"parse", "model_id", "streams", "plan", "screening", "forward", "answer", "relay"}
)


def public_names(path: Path) -> set[str]:
    """Public module-level functions and public methods/properties of public classes."""
    names: set[str] = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            if not node.name.startswith("_"):
                names.add(node.name)
        elif isinstance(node, ast.ClassDef):
            if node.name.startswith("_") or node.name in _SKIP_CLASSES:
                continue
            surface = node.name.endswith("Surface")
            for item in node.body:
                if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef) and not (
                    item.name.startswith("_") or (surface and item.name in _SURFACE_METHODS)
                ):
                    names.add(item.name)
    return names


@functools.cache
def _facts(text: str) -> tuple[frozenset[str], frozenset[str]]:
    """A test file's imported modules and the names it mentions; each file is walked once
    for all the modules checked (keyed by its text)."""
    imported: set[str] = set()
    names: set[str] = set()
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module)
        elif isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
        if isinstance(node, ast.Name):
            names.add(node.id)
        elif isinstance(node, ast.Attribute):
            names.add(node.attr)
        elif isinstance(node, ast.alias):
            names.add(node.asname or node.name)
    return frozenset(imported), frozenset(names)


def used_names(root: Path, module: str) -> set[str]:
    """Every name and attribute mentioned by the unit tests that import `module` (dotted,
    e.g. gateway.chat.service) or its package."""
    package = module.rsplit(".", 1)[0]
    used: set[str] = set()
    for path in root.rglob("test_*.py"):
        imported, names = _facts(path.read_text(encoding="utf-8"))
        if imported & {module, package}:
            used |= names
    return used


def test_every_public_function_of_the_request_path_has_a_unit_test() -> None:
    missing = set()
    for module in COVERED:
        dotted = "gateway." + module.removesuffix(".py").replace("/", ".")
        used = used_names(UNIT, dotted)
        missing |= {f"{module}:{n}" for n in public_names(GATEWAY / module) if n not in used}
    assert not missing, f"public functions with no test in tests/unit: {sorted(missing)}"


def test_the_check_sees_functions_methods_and_uses(tmp_path: Path) -> None:
    source = tmp_path / "m.py"
    source.write_text(
        "def f(): ...\ndef _g(): ...\nclass C:\n    def m(self): ...\n"
        "    def _p(self): ...\n    @property\n    def q(self): ...\nclass _D:\n"
        "    def hidden(self): ...\n"
    )
    assert public_names(source) == {"f", "m", "q"}
    tests = tmp_path / "tests"
    tests.mkdir()
    (tests / "test_x.py").write_text("from p.m import f\n\ndef test():\n    C().m()\n")
    (tests / "test_y.py").write_text("from p.other import q\n")
    used = used_names(tests, "p.m")
    assert {"f", "m"} <= used and "q" not in used
    assert "f" not in used_names(tests, "p.n")
    (tests / "test_z.py").write_text("from p import g\n")
    assert "g" in used_names(tests, "p.n")  # the package imported counts
