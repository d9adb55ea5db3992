"""Independent reference counts: transformers' AutoTokenizer, loaded exactly as vLLM loads it."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any


@cache
def _tokenizer(directory: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(directory))


def prompt_tokens(directory: Path, messages: list[dict[str, Any]]) -> int:
    ids = _tokenizer(directory).apply_chat_template(
        messages, add_generation_prompt=True, tokenize=True, return_dict=False
    )
    return len(ids)


def text_tokens(directory: Path, text: str) -> int:
    return len(_tokenizer(directory)(text, add_special_tokens=False)["input_ids"])
