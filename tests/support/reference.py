"""Independent reference counts: HuggingFace transformers' own apply_chat_template."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

_CONFIG_KEYS = ("bos_token", "eos_token", "unk_token", "pad_token", "chat_template")


@cache
def _tokenizer(directory: Path) -> Any:
    from transformers import PreTrainedTokenizerFast

    config = json.loads((directory / "tokenizer_config.json").read_text())
    kwargs = {k: config[k] for k in _CONFIG_KEYS if config.get(k) is not None}
    return PreTrainedTokenizerFast(tokenizer_file=str(directory / "tokenizer.json"), **kwargs)


def prompt_tokens(directory: Path, messages: list[dict[str, Any]]) -> int:
    ids = _tokenizer(directory).apply_chat_template(
        messages, add_generation_prompt=True, tokenize=True
    )
    if not isinstance(ids, list):
        ids = ids["input_ids"]
    return len(ids)


def text_tokens(directory: Path, text: str) -> int:
    return len(_tokenizer(directory)(text, add_special_tokens=False)["input_ids"])
