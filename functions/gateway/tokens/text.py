"""Raw text as transformers' AutoTokenizer tokenizes it, special tokens added: how vLLM
counts a /v1/completions prompt or a /v1/embeddings input.

transformers (5.x) rebuilds a Llama-class tokenizer's pipeline instead of using the one in
tokenizer.json: no normalizer, and a Metaspace pre-tokenizer that prepends "▁" always
(`legacy` true), to the first piece only (`legacy` false, the default), or never
(`add_prefix_space` false). The tokenizer.json normalizer (Prepend + Replace) differs on
text that starts with a space. Other classes keep their tokenizer.json pipeline.
"""

from __future__ import annotations

import threading
from typing import Any

from tokenizers import Tokenizer, pre_tokenizers

_LLAMA_CLASSES = frozenset({"LlamaTokenizer", "LlamaTokenizerFast"})


def _prepend_scheme(config: dict[str, Any]) -> str:
    if config.get("add_prefix_space") is False:
        return "never"
    return "always" if config.get("legacy") is True else "first"


class RawTextCounter:
    """Counts raw text with special tokens, with transformers' pipeline where it differs."""

    def __init__(self, tokenizer: Tokenizer, config: dict[str, Any]) -> None:
        self._source = tokenizer
        self._llama = config.get("tokenizer_class") in _LLAMA_CLASSES
        self._scheme = _prepend_scheme(config)
        self._rebuilt: Tokenizer | None = None
        self._lock = threading.Lock()

    def _tokenizer(self) -> Tokenizer:
        if not self._llama:
            return self._source
        if self._rebuilt is None:
            with self._lock:
                if self._rebuilt is None:
                    rebuilt = Tokenizer.from_str(self._source.to_str())
                    rebuilt.normalizer = None
                    rebuilt.pre_tokenizer = pre_tokenizers.Metaspace(
                        replacement="▁", prepend_scheme=self._scheme, split=False
                    )
                    self._rebuilt = rebuilt
        return self._rebuilt

    def count(self, text: str) -> int:
        return len(self._tokenizer().encode(text, add_special_tokens=True).ids)
