"""Prompts as completions and embeddings take them: a text, texts, token ids, or lists of
token ids (the two routes are siblings; this is what they share)."""

from __future__ import annotations

from typing import Annotated, cast

from pydantic import Field
from pydantic_core import PydanticCustomError

# At most this many prompts in one request (OpenAI's limit on batched inputs).
MAX_PROMPTS = 2048
TokenId = Annotated[int, Field(ge=0, le=2**31 - 1)]
# A prompt (or embeddings input): a text, texts, token ids, or lists of token ids.
Prompt = str | list[str] | list[TokenId] | list[list[TokenId]]


def one_by_one(value: Prompt) -> tuple[list[str], list[list[int]]]:
    """The prompts one by one: (texts, []) or ([], token id lists)."""
    if isinstance(value, str):
        return [value], []
    if all(isinstance(v, int) for v in value):
        return [], [cast(list[int], value)]
    if isinstance(value[0], str):
        return value, []
    return [], cast(list[list[int]], value)


def check_prompt(value: Prompt, name: str, most: int) -> Prompt:
    """Non-empty, at most `most` items, none of them empty."""
    if isinstance(value, list):
        if not value:
            raise PydanticCustomError(name, "{name} must not be an empty array.", {"name": name})
        if len(value) > most:
            raise PydanticCustomError(
                name, "{name} has more than {most} items.", {"name": name, "most": most}
            )
        if any(isinstance(p, list | str) and not p for p in value):
            raise PydanticCustomError(name, "{name} must not contain empty items.", {"name": name})
    elif not value:
        raise PydanticCustomError(name, "{name} cannot be an empty string.", {"name": name})
    return value
