"""Small normalizations that keep relayed upstream bodies and chunks valid OpenAI shapes."""

from __future__ import annotations

from typing import Any


def logprobs(value: Any) -> Any:
    """A choice's logprobs as OpenAI shapes them: vLLM sends only `content`, OpenAI's
    schema requires both `content` and `refusal` (null when absent)."""
    if not isinstance(value, dict):
        return None
    if "content" in value and "refusal" in value:
        return value
    return {"content": value.get("content"), "refusal": value.get("refusal"), **value}
