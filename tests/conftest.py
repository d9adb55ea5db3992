"""Shared fixtures. Paths to ../shared are resolved here; tests that need it skip cleanly."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("GATEWAY_SHARED_DIR", ROOT.parent / "shared"))
TOKENIZERS_DIR = SHARED / "tokenizers"
CONFORMANCE_SCHEMAS = SHARED / "conformance" / "openai-chat-schemas.json"


@pytest.fixture(scope="session")
def tokenizers_dir() -> Path:
    if not (TOKENIZERS_DIR / "qwen3" / "tokenizer.json").is_file():
        pytest.skip(f"real tokenizer files not found at {TOKENIZERS_DIR} (../shared is absent)")
    return TOKENIZERS_DIR


@pytest.fixture(scope="session")
def conformance_schemas() -> Path:
    if not CONFORMANCE_SCHEMAS.is_file():
        pytest.skip(f"OpenAI schemas not found at {CONFORMANCE_SCHEMAS} (../shared is absent)")
    return CONFORMANCE_SCHEMAS
