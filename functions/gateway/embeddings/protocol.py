"""Wire models for embeddings (`POST /v1/embeddings`), fields in OpenAI's order."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, with_config
from typing_extensions import TypedDict  # pydantic needs typing_extensions' on Python < 3.12

from gateway.prompts import Prompt, check_prompt

# OpenAI's limit on inputs per request.
MAX_INPUTS = 2048


class EmbeddingRequest(BaseModel):
    # Unknown fields (vLLM's truncate_prompt_tokens, normalize, ...) are forwarded unchanged.
    model_config = ConfigDict(extra="allow", use_attribute_docstrings=True)

    input: Prompt
    """A text, a list of texts, token ids, or a list of token-id lists (at most 2048)."""
    model: str = Field(min_length=1, max_length=256)
    """An embedding model's id (its `routes` include `embeddings`)."""
    encoding_format: Literal["float", "base64"] | None = None
    """`float` (default) or `base64` (little-endian float32)."""
    dimensions: int | None = Field(default=None, ge=1, strict=True)
    """Output dimensions, for models that support shortening; forwarded."""
    user: str | None = None
    """Your end user's id, forwarded unchanged."""

    @field_validator("input")
    @classmethod
    def _non_empty(cls, value: Prompt) -> Prompt:
        return check_prompt(value, "input", MAX_INPUTS)


# --- Response shapes: what the gateway returns, and what /docs shows -------------------
# (TypedDicts: plain dicts on the hot path, checked by mypy; chat/responses.py says why.)


@with_config(ConfigDict(use_attribute_docstrings=True))
class Embedding(TypedDict):
    object: Literal["embedding"]
    """Always `embedding`."""
    index: int
    """The input's position."""
    embedding: list[float] | str
    """The vector: floats, or a base64 string."""


@with_config(ConfigDict(use_attribute_docstrings=True))
class EmbeddingUsage(TypedDict):
    prompt_tokens: int
    """Tokens in the inputs, special tokens included."""
    total_tokens: int
    """The same: embeddings generate nothing."""


@with_config(ConfigDict(use_attribute_docstrings=True))
class EmbeddingList(TypedDict):
    object: Literal["list"]
    """Always `list`."""
    data: list[Embedding]
    """One embedding per input, in input order."""
    model: str
    """The model's id."""
    usage: EmbeddingUsage
    """What the request used."""
