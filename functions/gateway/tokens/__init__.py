"""Exact token counts: HuggingFace `tokenizers` over each model's real chat template."""

from gateway.tokens.store import ChatTokenizer, TokenizerStore

__all__ = ["ChatTokenizer", "TokenizerStore"]
