"""Which upstream serves which model, and with which tokenizer.

The configuration is JSON (from MODELS_CONFIG, MODELS_CONFIG_FILE or an SSM parameter):

    {"models": [
      {"id": "qwen3", "tokenizer": "Qwen/Qwen3-8B",
       "upstream": {"type": "openai", "base_url": "http://gpu:8000", "model": "Qwen/Qwen3-8B",
                    "api_key_env": "UPSTREAM_API_KEY"}},
      {"id": "llama3", "tokenizer": "meta-llama/Meta-Llama-3-8B-Instruct",
       "upstream": {"type": "sagemaker", "endpoint_name": "llama3-endpoint"}},
      {"id": "qwen3-ha", "tokenizer": "Qwen/Qwen3-8B", "fallbacks": ["qwen3"],
       "endpoints": [
         {"name": "a", "type": "openai", "base_url": "http://gpu-a:8000", "weight": 2,
          "max_concurrency": 256},
         {"name": "b", "type": "openai", "base_url": "http://gpu-b:8000"},
         {"name": "sm", "type": "sagemaker", "endpoint_name": "qwen3-endpoint"}]}
    ],
     "guard_policies": [...]}

A model with several endpoints is routed across them (gateway/backends/routing.py,
docs/ROUTING.md). A model with `"guard": {"format": "llama_guard"}` is a safety
classifier; a guard policy attaches one to models (and optionally keys): see GuardPolicy
and docs/GUARDRAILS.md.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from gateway.errors import ConfigurationError
from gateway.models.native import NativeRoute, check_fallbacks, check_model
from gateway.settings import Settings


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class _Routed(_Frozen):
    """What routing needs of every endpoint (docs/ROUTING.md)."""

    # A stable name: the usage record's `endpoint` and the key of its shared cooldown.
    # Default: the base URL (or `sagemaker:<endpoint_name>`).
    name: str | None = Field(default=None, min_length=1, max_length=200)
    # Share of the model's traffic, relative to its other endpoints' weights.
    weight: float = Field(default=1.0, gt=0)
    # The server's own concurrency (vLLM's max_num_seqs): past it, this process prefers
    # the model's other endpoints.
    max_concurrency: int | None = Field(default=None, gt=0)

    @property
    def endpoint(self) -> str:
        raise NotImplementedError

    @property
    def label(self) -> str:
        return self.name or self.endpoint


class OpenAIEndpoint(_Routed):
    """An OpenAI-compatible HTTP server: vLLM, TGI's Messages API, SGLang, llama.cpp."""

    type: Literal["openai"] = "openai"
    base_url: str
    # The model name the upstream expects; defaults to the public id.
    model: str | None = None
    # The secret reference: name of an environment variable holding the upstream's bearer
    # token (in Lambda, set it from Secrets Manager or SSM with a dynamic reference).
    api_key_env: str | None = None
    # Extra request headers this endpoint needs (a routing header, a tenant id).
    headers: dict[str, str] = Field(default_factory=dict)

    @property
    def chat_url(self) -> str:
        return self.url_for("/chat/completions")

    def url_for(self, path: str) -> str:
        """The URL of an OpenAI route (`/chat/completions`, `/completions`, `/embeddings`)."""
        base = self.base_url.rstrip("/")
        if not base.endswith("/v1"):
            base += "/v1"
        return base + path

    @property
    def endpoint(self) -> str:
        return self.base_url

    def api_key(self) -> str | None:
        return os.environ.get(self.api_key_env) if self.api_key_env else None


class SageMakerEndpoint(_Routed):
    """A SageMaker real-time endpoint whose container accepts an OpenAI `messages` body."""

    type: Literal["sagemaker"] = "sagemaker"
    endpoint_name: str
    model: str | None = None

    @property
    def endpoint(self) -> str:
        return f"sagemaker:{self.endpoint_name}"


Upstream = Annotated[OpenAIEndpoint | SageMakerEndpoint, Field(discriminator="type")]
RouteKind = Literal["chat", "completions", "embeddings"]
# Routes the gateway serves by translating them to chat completions (gateway/responses,
# gateway/messages): a model that serves chat serves them.
TRANSLATED_TO_CHAT = frozenset({"responses", "messages"})


class GuardSpec(_Frozen):
    """How to ask a guard model and read its verdict (gateway/guard, docs/GUARDRAILS.md)."""

    # llama_guard: the conversation goes to the guard's own chat template; the guard
    # answers `safe` or `unsafe` and a line of comma-separated categories (`S1,S10`).
    format: Literal["llama_guard"] = "llama_guard"
    # The verdict is a few tokens: a small cap keeps a misbehaving guard cheap.
    max_tokens: int = Field(default=20, gt=0, le=512)


class GuardPolicy(_Frozen):
    """Attaches a guard to models (and optionally only to some keys)."""

    id: str = Field(min_length=1)
    guard: str = Field(min_length=1)  # the id of a model declared with `guard`
    models: tuple[str, ...] = Field(min_length=1)  # guarded model ids; "*": every model
    keys: tuple[str, ...] | None = None  # key ids; None: every key
    input: bool = True  # screen the conversation before forwarding
    output: bool = False  # screen the completion (streams: every window, and at the end)
    # Streams: tokens held back and screened together. Larger windows: fewer guard calls
    # and fewer stalls, but more tokens wait before the client sees them.
    window_tokens: int = Field(default=64, gt=0, le=4096)
    # Categories that block (`S1`, ...); None: every category the guard reports.
    block: tuple[str, ...] | None = None
    # When the guard fails or misses its deadline: "open" serves anyway, "closed" refuses.
    on_error: Literal["open", "closed"] = "closed"
    deadline_seconds: float = Field(default=2.0, gt=0, le=60)

    def applies_to(self, *, model_id: str, key_id: str) -> bool:
        model_ok = "*" in self.models or model_id in self.models
        return model_ok and (self.keys is None or key_id in self.keys)

    def blocks(self, category: str) -> bool:
        return self.block is None or category in self.block


class ModelConfig(_Frozen):
    id: str = Field(min_length=1)
    # A directory name under TOKENIZERS_DIR or a Hugging Face repo id.
    tokenizer: str = Field(min_length=1)
    # One upstream, or several `endpoints` (replicas, a SageMaker endpoint beside them)
    # that requests are routed across; either way both fields are set after validation:
    # `upstream` is the first endpoint.
    upstream: Upstream
    endpoints: tuple[Upstream, ...] = ()
    # Models tried, in order, once every endpoint of this one has failed the request.
    fallbacks: tuple[str, ...] = ()
    # Upper bound on generated tokens per choice; also the default when a request sets none.
    max_tokens: int | None = Field(default=None, gt=0)
    # The model's context length (vLLM's max_model_len): a prompt plus max_tokens over it is
    # refused with 400 context_length_exceeded before anything is forwarded.
    max_model_len: int | None = Field(default=None, gt=0)
    # vLLM's prefix cache shared by whom (a `cache_salt` the gateway sets, keys/tenancy.py):
    # `none` (everyone: a request's own cache_salt is forwarded), `owner` (the keys of one
    # owner), `key` (each key alone), so no tenant can time another's cached prefix.
    prefix_cache_isolation: Literal["none", "owner", "key"] = "none"
    # The upstream runs with --scheduling-policy priority: each key's `priority` is sent.
    priority_scheduling: bool = False
    # Input kinds the model accepts; content parts of any other kind get a 400.
    modalities: tuple[Literal["text", "image", "audio"], ...] = ("text",)
    # The OpenAI routes the upstream serves: a generative model (vLLM's default runner)
    # serves chat and completions; an embedding model (vLLM `--runner pooling`, TEI)
    # is declared with ["embeddings"].
    routes: tuple[RouteKind, ...] = Field(default=("chat", "completions"), min_length=1)
    # Embeddings: the longest input, in tokens (default max_model_len), and the most inputs
    # the upstream takes in one request (TEI's --max-client-batch-size): larger requests
    # are split into batches of this size, sent concurrently and reassembled in order.
    max_input_tokens: int | None = Field(default=None, gt=0)
    max_batch_size: int | None = Field(default=None, gt=0)
    # Set on a safety classifier (Llama Guard 3, served like any chat model): the model a
    # guard policy (`guard_policies`) names to screen other models' prompts and completions.
    guard: GuardSpec | None = None
    native_routes: tuple[NativeRoute, ...] = ()  # forwarded as they are (models/native.py)

    @model_validator(mode="before")
    @classmethod
    def _one_or_more_endpoints(cls, data: object) -> object:
        if not isinstance(data, dict):
            return data
        upstream, endpoints = data.get("upstream"), data.get("endpoints")
        if upstream is not None and endpoints:
            raise ValueError("give `upstream` or `endpoints`, not both")
        if endpoints:
            return {**data, "upstream": next(iter(endpoints))}
        if upstream is not None:
            return {**data, "endpoints": [upstream]}
        return data

    @model_validator(mode="after")
    def _consistent(self) -> ModelConfig:
        labels = [e.label for e in self.endpoints]
        if len(set(labels)) != len(labels):
            raise ValueError(f"model {self.id!r}: endpoint names must differ (give each a `name`)")
        if self.id in self.fallbacks:
            raise ValueError(f"model {self.id!r} names itself as a fallback")
        check_model(self)
        return self

    def accepts(self, modality: str) -> bool:
        return modality in self.modalities

    def serves(self, route: str) -> bool:
        """Whether the model serves `route`. The Responses and Messages APIs are
        translated to chat completions, so every chat model serves them."""
        if route in TRANSLATED_TO_CHAT:
            return "chat" in self.routes
        return route in self.routes

    @property
    def input_limit(self) -> int | None:
        return self.max_input_tokens or self.max_model_len

    @property
    def upstream_model(self) -> str:
        return self.upstream.model or self.id


class ModelsFile(_Frozen):
    models: list[ModelConfig] = Field(default_factory=list)
    guard_policies: list[GuardPolicy] = Field(default_factory=list)


class ModelRegistry:
    """The configured models, by public id."""

    def __init__(
        self, models: list[ModelConfig], guard_policies: Sequence[GuardPolicy] = ()
    ) -> None:
        self._models = {m.id: m for m in models}
        if len(self._models) != len(models):
            raise ConfigurationError("models config: duplicate model id")
        for model in models:
            unknown = [f for f in model.fallbacks if f not in self._models]
            if unknown:
                raise ConfigurationError(f"model {model.id!r}: unknown fallbacks {unknown}")
            check_fallbacks(model, self._models)
        self.guard_policies = tuple(guard_policies)
        for policy in self.guard_policies:
            self._check_policy(policy)

    def _check_policy(self, policy: GuardPolicy) -> None:
        guard = self._models.get(policy.guard)
        if guard is None or guard.guard is None:
            raise ConfigurationError(
                f"guard policy {policy.id!r}: {policy.guard!r} is not a model declared with `guard`"
            )
        unknown = [m for m in policy.models if m != "*" and m not in self._models]
        if unknown:
            raise ConfigurationError(f"guard policy {policy.id!r}: unknown models {unknown}")

    @classmethod
    def from_json(cls, text: str | bytes) -> ModelRegistry:
        try:
            parsed = ModelsFile.model_validate_json(text)
            return cls(parsed.models, parsed.guard_policies)
        except ValidationError as exc:
            raise ConfigurationError(f"invalid models config: {exc}") from exc

    @classmethod
    def from_settings(
        cls, settings: Settings, *, read_ssm_parameter: Callable[[str], str] | None = None
    ) -> ModelRegistry:
        if settings.models_config:
            return cls.from_json(settings.models_config)
        if settings.models_config_file:
            try:
                return cls.from_json(settings.models_config_file.read_bytes())
            except OSError as exc:
                raise ConfigurationError(f"cannot read MODELS_CONFIG_FILE: {exc}") from exc
        if settings.models_config_ssm_parameter:
            if read_ssm_parameter is None:
                raise ConfigurationError("MODELS_CONFIG_SSM_PARAMETER set but no SSM reader given")
            return cls.from_json(read_ssm_parameter(settings.models_config_ssm_parameter))
        return cls([])

    def get(self, model_id: str) -> ModelConfig | None:
        return self._models.get(model_id)

    def __iter__(self) -> Iterator[ModelConfig]:
        return iter(self._models.values())

    def __len__(self) -> int:
        return len(self._models)
