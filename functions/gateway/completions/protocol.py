"""Wire models for legacy completions (`POST /v1/completions`), fields in OpenAI's order.

Requests are validated here after gateway/inputs.py has bounded the raw JSON; responses
are plain dicts, typed by the TypedDicts below, which /docs also shows.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, NotRequired

from pydantic import ConfigDict, Field, field_validator, with_config
from typing_extensions import TypedDict  # pydantic needs typing_extensions' on Python < 3.12

from gateway.generation import GenerationRequest, StreamOptions
from gateway.prompts import MAX_PROMPTS, Prompt, check_prompt


class CompletionRequest(GenerationRequest):
    # Unknown fields (vLLM's min_p, repetition_penalty, ...) are forwarded unchanged.
    model_config = ConfigDict(extra="allow", use_attribute_docstrings=True)

    model: str = Field(min_length=1, max_length=256)
    """The model's id, as `GET /v1/models` lists it."""
    prompt: Prompt
    """A text, a list of texts, token ids, or a list of token-id lists."""
    best_of: int | None = Field(default=None, ge=1, le=20, strict=True)
    """Generate this many per prompt and return the best `n`."""
    echo: bool | None = Field(default=None, strict=True)
    """Return the prompt before the completion."""
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2, strict=True)
    """Penalty for tokens by how often they appeared (-2 to 2)."""
    logit_bias: dict[str, Annotated[float, Field(ge=-100, le=100)]] | None = None
    """Token id to bias (-100 to 100)."""
    logprobs: int | None = Field(default=None, ge=0, le=20, strict=True)
    """Return the log probabilities of this many most likely tokens (0-20)."""
    max_tokens: int | None = Field(default=None, ge=1, strict=True)
    """The most tokens to generate per choice (default 16; capped by the model's `max_tokens`)."""
    n: int | None = Field(default=None, ge=1, le=128, strict=True)
    """Completions per prompt."""
    presence_penalty: float | None = Field(default=None, ge=-2, le=2, strict=True)
    """Penalty for tokens that appeared at all (-2 to 2)."""
    seed: int | None = Field(default=None, ge=-(2**63), le=2**63 - 1, strict=True)
    """Seed for sampling, forwarded unchanged."""
    stop: str | list[str] | None = None
    """Up to a few strings that end the generation."""
    stream: bool | None = Field(default=False, strict=True)
    """Stream `text_completion` chunks as server-sent events."""
    stream_options: StreamOptions | None = None
    """Streaming options (`include_usage`)."""
    suffix: str | None = None
    """Text after the completion, forwarded unchanged."""
    temperature: float | None = Field(default=None, ge=0, le=2, strict=True)
    """Sampling temperature (0-2)."""
    top_p: float | None = Field(default=None, ge=0, le=1, strict=True)
    """Nucleus sampling mass (0-1)."""
    user: str | None = None
    """Your end user's id, forwarded unchanged."""
    # vLLM / TGI sampling parameter (not in OpenAI's API).
    top_k: int | None = Field(default=None, ge=-1, strict=True)
    """vLLM/TGI extension: sample from the k most likely tokens."""

    @field_validator("prompt")
    @classmethod
    def _non_empty(cls, value: Prompt) -> Prompt:
        return check_prompt(value, "prompt", MAX_PROMPTS)


# --- Response shapes: what the gateway returns, and what /docs shows -------------------
# (TypedDicts: plain dicts on the hot path, checked by mypy; chat/responses.py says why.)


@with_config(ConfigDict(use_attribute_docstrings=True))
class CompletionChoice(TypedDict):
    index: int
    """The choice's position (prompt index times `n` plus the choice)."""
    text: str
    """The generated text (a stream: the next piece of it)."""
    logprobs: dict[str, Any] | None
    """Log probabilities, when asked for."""
    finish_reason: Literal["stop", "length", "content_filter"] | None
    """`stop` (natural end or stop string) or `length` (max_tokens)."""


@with_config(ConfigDict(use_attribute_docstrings=True))
class CompletionUsage(TypedDict):
    prompt_tokens: int
    """Tokens in the prompts, special tokens included."""
    completion_tokens: int
    """Tokens generated."""
    total_tokens: int
    """Their sum."""


@with_config(ConfigDict(use_attribute_docstrings=True))
class Completion(TypedDict):
    """A completion, or (streamed) one `data:` event of it."""

    id: str
    """`cmpl-` and the request id."""
    object: Literal["text_completion"]
    """Always `text_completion`."""
    created: int
    """When the request started (Unix seconds)."""
    model: str
    """The model's id."""
    choices: list[CompletionChoice]
    """The completions; empty on a stream's usage chunk."""
    usage: NotRequired[CompletionUsage]
    """What the request used (a stream: on its last chunk, when asked for)."""
    system_fingerprint: NotRequired[str]
    """The upstream's, when it sent one."""
