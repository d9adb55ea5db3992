"""create_app: what it says at init about the models config."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from gateway.app import create_app
from gateway.settings import Settings

UPSTREAM = {"type": "openai", "base_url": "http://127.0.0.1:9", "model": "qwen3"}
MESSAGE = "models without max_model_len"


def _app_logs(caplog: pytest.LogCaptureFixture, models: list[dict[str, object]]) -> list[str]:
    config = json.dumps({"models": models})
    with caplog.at_level(logging.WARNING, logger="gateway"):
        create_app(Settings(models_config=config, tokenizers_dir=Path("/nonexistent")))
    return [r.getMessage() for r in caplog.records]


def test_a_model_without_max_model_len_is_named_at_init(caplog: pytest.LogCaptureFixture) -> None:
    models = [
        {"id": "bounded", "tokenizer": "qwen3", "upstream": UPSTREAM, "max_model_len": 4096},
        {"id": "open", "tokenizer": "qwen3", "upstream": UPSTREAM},
    ]
    assert MESSAGE in " ".join(_app_logs(caplog, models))
    [record] = [r for r in caplog.records if r.getMessage().startswith(MESSAGE)]
    assert record.models == ["open"]  # type: ignore[attr-defined]


def test_no_warning_when_every_model_declares_it(caplog: pytest.LogCaptureFixture) -> None:
    models = [{"id": "bounded", "tokenizer": "qwen3", "upstream": UPSTREAM, "max_model_len": 4096}]
    assert not any(MESSAGE in line for line in _app_logs(caplog, models))
