"""The token tests run on the tokenizer families found (../shared's, else what `make run`
downloaded), each family's tests skipped with its reason where it is found nowhere
(tests/support/tokenizers.py): `tokenizers_dir` here needs one family, not all."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import TOKENIZERS


@pytest.fixture(scope="session")
def tokenizers_dir(tokenizer_folder: Path) -> Path:
    if not TOKENIZERS.found:
        message = TOKENIZERS.how_to_provide()
        pytest.skip(message or "no tokenizer family found")
    return tokenizer_folder
