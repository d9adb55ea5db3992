"""Wire models for embeddings (`POST /v1/embeddings`), fields in OpenAI's order."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from gateway.completions.protocol import Prompt, check_prompt

# OpenAI's limit on inputs per request.
MAX_INPUTS = 2048


class EmbeddingRequest(BaseModel):
    # Unknown fields (vLLM's truncate_prompt_tokens, normalize, ...) are forwarded unchanged.
    model_config = ConfigDict(extra="allow")

    input: Prompt
    model: str = Field(min_length=1, max_length=256)
    encoding_format: Literal["float", "base64"] | None = None
    dimensions: int | None = Field(default=None, ge=1)
    user: str | None = None

    @field_validator("input")
    @classmethod
    def _non_empty(cls, value: Prompt) -> Prompt:
        return check_prompt(value, "input", MAX_INPUTS)


# --- Response models (documentation) ------------------------------------------------


class Embedding(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str


class EmbeddingUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class EmbeddingList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Embedding]
    model: str
    usage: EmbeddingUsage
