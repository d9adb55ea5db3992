"""`make build` builds the deployable artifact, for arm64, under Lambda's 250 MB limit.

Slow (installs aws-sam-cli into .venv-sam on first use, downloads arm64 wheels from PyPI;
about a minute once cached) but it runs in CI: a template that does not build cannot
deploy. It is skipped only when no python3.12 exists, which `sam build` needs.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import TOKENIZERS_DIR

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / ".aws-sam" / "build"
LAYER = ROOT / "layers" / "build" / "tokenizers"
LIMIT = 250 * 1024 * 1024  # unzipped function code plus all its layers
# The public Lambda Web Adapter layer (StreamFunction only) is not downloaded by the build;
# its arm64 zip holds one static binary and a wrapper script (a few MB). Count it generously.
LWA_LAYER_ALLOWANCE = 10 * 1024 * 1024
EM_AARCH64 = 183


def _python312() -> str | None:
    candidates = [
        shutil.which("python3.12"),
        *map(str, Path.home().glob(".pyenv/versions/3.12*/bin/python3.12")),
    ]
    for candidate in filter(None, candidates):
        probe = subprocess.run(
            [candidate, "-c", "import sys; assert sys.version_info[:2] == (3, 12)"],
            capture_output=True,
            check=False,
        )
        if probe.returncode == 0:
            return candidate
    return None


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def _elf_machine(path: Path) -> int:
    header = path.read_bytes()[:20]
    assert header[:4] == b"\x7fELF", path
    return int.from_bytes(header[18:20], "little")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if _python312() is None:
        pytest.skip("python3.12 is not installed; `sam build` needs it for the python3.12 runtime")
    args = ["make", "build"]
    if (TOKENIZERS_DIR / "qwen3" / "tokenizer.json").is_file():
        # a realistic layer: two large tokenizers, copied from ../shared
        config = tmp_path_factory.mktemp("build") / "models.json"
        models = [
            {"id": "qwen3", "tokenizer": "Qwen/Qwen3-8B", "upstream": {"type": "openai"}},
            {"id": "llama-3-8b-instruct", "tokenizer": "meta-llama/Meta-Llama-3-8B-Instruct"},
        ]
        config.write_text(json.dumps({"models": models}))
        args += [f"MODELS_CONFIG_FILE={config}", f"TOKENIZERS_FROM={TOKENIZERS_DIR}"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAKE")}
    result = subprocess.run(
        args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800, check=False
    )
    print(result.stdout[-4000:])
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return BUILD


def test_build_fits_lambda_size_limit(built: Path) -> None:
    layer = _size(LAYER)
    for function, extra in (("StreamFunction", LWA_LAYER_ALLOWANCE), ("ApiFunction", 0)):
        code = _size(built / function)
        total = code + layer + extra
        print(
            f"{function}: code {code / 2**20:.1f} MB + tokenizer layer {layer / 2**20:.1f} MB"
            f" + other layers {extra / 2**20:.0f} MB = {total / 2**20:.1f} MB unzipped"
        )
        assert total < LIMIT


def test_build_holds_the_app_for_arm64_python312(built: Path) -> None:
    assert (built / "template.yaml").is_file()
    for function in ("StreamFunction", "ApiFunction"):
        root = built / function
        for package in ("gateway", "fastapi", "mangum", "uvicorn", "tokenizers", "orjson"):
            assert (root / package).is_dir(), f"{package} missing from {function}"
        assert (root / "gateway" / "lambdas" / "api.py").is_file()
        (tokenizers_so,) = (root / "tokenizers").glob("*.so")
        assert _elf_machine(tokenizers_so) == EM_AARCH64
        (pydantic_so,) = (root / "pydantic_core").glob("*.so")
        assert "cpython-312-aarch64" in pydantic_so.name
    assert os.access(built / "StreamFunction" / "run.sh", os.X_OK)
    assert (LAYER / "tokenizers").is_dir()
