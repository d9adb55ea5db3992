"""What one simulated server owns besides its tokenizers: an engine per served model (as
if each model ran on its own vLLM server) and the Prometheus metrics they feed."""

from __future__ import annotations

from collections.abc import Sequence

from gpusim.engine import Admission, Engine, EngineConfig
from gpusim.errors import RequestError
from gpusim.metrics import SimMetrics


def context_length_error(limit: int, prompt_tokens: int, max_tokens: int | None) -> RequestError:
    """vLLM's 400 for a prompt plus max_tokens over max_model_len. Its renderer tokenizes
    with truncation at max_input_tokens + 1 (max_input_tokens = max_model_len - max_tokens),
    hence "at least"; VLLMValidationError appends the parameter and value."""
    asked = max_tokens or 0
    counted = min(prompt_tokens, limit - asked + 1) if limit >= asked else prompt_tokens
    return RequestError(
        400,
        f"This model's maximum context length is {limit} tokens. However, you requested "
        f"{asked} output tokens and your prompt contains at least {counted} input tokens, "
        f"for a total of at least {counted + asked} tokens. Please reduce the length of the "
        "input prompt or the number of requested output tokens. "
        f"(parameter=input_tokens, value={counted})",
        param="input_tokens",
    )


def check_context(limit: int | None, prompt_tokens: int, max_tokens: int | None) -> None:
    """Refuse as vLLM does: the prompt must leave room for max_tokens (at least 1)."""
    if limit is None:
        return
    if prompt_tokens + (max_tokens or 0) > limit or prompt_tokens >= limit:
        raise context_length_error(limit, prompt_tokens, max_tokens)


class Replica:
    """The engines of the served models and their metrics."""

    def __init__(self, names: Sequence[str], config: EngineConfig) -> None:
        self.engines = {name: Engine(config) for name in names}
        self.metrics = SimMetrics(self.engines)

    def engine(self, model: str) -> Engine:
        return self.engines[model]

    def admitted(self, model: str, admission: Admission) -> None:
        self.metrics.prefix_lookup(
            model,
            queries=sum(s.prompt_tokens for s in admission.specs),
            hits=sum(admission.cached_tokens),
        )
