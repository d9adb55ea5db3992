"""Fixtures shared by the chat tests: a multimodal simulated endpoint and a gateway on it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Gateway
from tests.gateway.chat import tools_support as ts


@pytest.fixture(scope="session")
def mm_sim_url(tokenizers_dir: Path) -> Iterator[str]:
    yield from ts.serve_multimodal_sim(tokenizers_dir)


@pytest.fixture(scope="session")
def gw(dynamodb: str, tokenizers_dir: Path, mm_sim_url: str) -> Iterator[Gateway]:
    yield from ts.serve_gateway(tokenizers_dir, mm_sim_url)
