"""Wire models of the small routes (routes.py). Responses are built as plain dicts; these
models document them in /docs."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class Model(BaseModel):
    id: str = Field(description="The model's id, as requests name it in `model`.")
    object: Literal["model"] = Field("model", description="Always `model`.")
    created: int = Field(description="When this gateway instance started (Unix seconds).")
    owned_by: str = Field(description="Always `gateway`.")
    max_model_len: int | None = Field(
        default=None, description="The model's context length (vLLM's field), if configured."
    )
    routes: list[Literal["chat", "completions", "embeddings"]] = Field(
        default_factory=list, description="The OpenAI routes the model serves."
    )


class ModelList(BaseModel):
    object: Literal["list"] = Field("list", description="Always `list`.")
    data: list[Model] = Field(description="The models the key may use.")


class Health(BaseModel):
    status: Literal["ok"] = Field(description="Always `ok`.")
