"""The unit tier runs its async tests on asyncio only (the fakes use asyncio; trio, if a
dependency installs it, would otherwise be tried too)."""

from __future__ import annotations

import pytest


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
