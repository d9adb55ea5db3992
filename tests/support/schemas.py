"""Validate bodies against OpenAI's own JSON schemas (../shared/conformance)."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema


@cache
def _validator(path: Path, root: str) -> jsonschema.Draft202012Validator:
    defs = json.loads(path.read_text())["$defs"]
    return jsonschema.Draft202012Validator({"$ref": f"#/$defs/{root}", "$defs": defs})


def validate(path: Path, root: str, body: Any) -> None:
    _validator(path, root).validate(body)
