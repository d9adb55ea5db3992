"""functions/requirements.txt (what `sam build` installs) matches pyproject's dependencies."""

from __future__ import annotations

import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]


def _pyproject() -> dict[str, Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = (Requirement(line) for line in project["dependencies"])
    return {canonicalize_name(r.name): r for r in requirements}


def _lambda() -> dict[str, Requirement]:
    lines = (ROOT / "functions" / "requirements.txt").read_text().splitlines()
    requirements = (Requirement(line) for line in lines if line.strip() and line[0] != "#")
    return {canonicalize_name(r.name): r for r in requirements}


def test_same_packages() -> None:
    assert set(_lambda()) == set(_pyproject())


def test_lambda_pins_satisfy_the_project_ranges() -> None:
    project = _pyproject()
    for name, requirement in _lambda().items():
        (spec,) = requirement.specifier
        assert spec.operator == "==", f"{name}: pin an exact version for reproducible builds"
        assert project[name].specifier.contains(spec.version), (name, spec.version)
