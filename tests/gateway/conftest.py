"""Fixtures shared by the gateway tests: a gateway serving chat, completions and an
embedding model on the simulated endpoint, and the OpenAI schemas of those routes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Gateway
from tests.support.routes import routes_gateway, schema_path


@pytest.fixture(scope="session")
def routes(dynamodb: str, tokenizers_dir: Path) -> Iterator[tuple[Gateway, str]]:
    with routes_gateway(tokenizers_dir) as running:
        yield running


@pytest.fixture(scope="session")
def route_schemas(conformance_schemas: Path) -> Path:
    path = schema_path(conformance_schemas)
    if not path.is_file():
        pytest.skip(f"OpenAI schemas not found at {path} (../shared is absent)")
    return path
