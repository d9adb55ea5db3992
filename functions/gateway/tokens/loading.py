"""Build a `tokenizers` backend the way transformers 5's `AutoTokenizer` builds it.

vLLM counts tokens with `AutoTokenizer.from_pretrained(folder)`. In transformers 5 that is not
`Tokenizer.from_file("tokenizer.json")`: the class named by `tokenizer_class` in
tokenizer_config.json is chosen, and a class with its own `__init__` (LlamaTokenizer,
Qwen2Tokenizer, GPT2Tokenizer, ...) rebuilds the normalizer, pre-tokenizer, decoder and model
options from its own code and the config's options, keeping only the vocab, merges and
post-processor of tokenizer.json. The rules below are read from transformers 5.20
(`models/llama/tokenization_llama.py`, `models/qwen2/tokenization_qwen2.py`,
`models/gpt2/tokenization_gpt2.py`, `tokenization_utils_tokenizers.py`,
`tokenization_utils_base.py`); docs/TOKENS.md lists them. The Lambda code must not import
transformers, so they are re-applied here with `tokenizers` alone. Each rule sets absolute
values, so applying it to an already converted file (the layer's) changes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from tokenizers import AddedToken, Regex, Tokenizer, decoders, normalizers, pre_tokenizers

logger = logging.getLogger(__name__)

# transformers' TokenizersBackend loads tokenizer.json as it is (PreTrainedTokenizerFast is its
# backward-compatible alias; Bloom's classes were removed and map to it).
AS_IS_CLASSES = frozenset(
    {"TokenizersBackend", "PreTrainedTokenizerFast", "BloomTokenizer", "PythonBackend"}
)
# tokenizer_config.json keys of the named special tokens (SPECIAL_TOKENS_ATTRIBUTES).
SPECIAL_TOKEN_KEYS = (
    "bos_token",
    "eos_token",
    "unk_token",
    "sep_token",
    "pad_token",
    "cls_token",
    "mask_token",
)
# models/qwen2/tokenization_qwen2.py PRETOKENIZE_REGEX
QWEN2_PRETOKENIZE_REGEX = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"""
    r"""| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
)


@dataclass(frozen=True)
class LoadedBackend:
    tokenizer: Tokenizer
    tokenizer_class: str
    rule: str  # what was applied, for start-up logs and `gateway tokens count`


def tokenizer_class(config: Mapping[str, Any]) -> str:
    """The class AutoTokenizer picks from tokenizer_config.json, without a `Fast` suffix
    (v5 registers `XxxFast` as an alias of `Xxx`); no class means TokenizersBackend."""
    name = config.get("tokenizer_class")
    if not isinstance(name, str) or not name:
        return "TokenizersBackend"
    return name.removesuffix("Fast") if name != "PreTrainedTokenizerFast" else name


def _prepend_scheme(add_prefix_space: bool, legacy: bool) -> str:
    # tokenization_utils_base._get_prepend_scheme
    if not add_prefix_space:
        return "never"
    return "always" if legacy else "first"


def _llama(tokenizer: Tokenizer, config: Mapping[str, Any]) -> str:
    """LlamaTokenizer.__init__: no normalizer, a Metaspace pre-tokenizer (prepend "first"
    unless `legacy`), BPE(fuse_unk=True, byte_fallback=True) with no unk token."""
    add_prefix_space = config.get("add_prefix_space")
    add_prefix_space = True if add_prefix_space is None else bool(add_prefix_space)
    legacy = bool(config.get("legacy", False))
    scheme = _prepend_scheme(add_prefix_space, legacy)
    _bpe(tokenizer, fuse_unk=True, byte_fallback=True)
    tokenizer.normalizer = None
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(
        replacement="▁", prepend_scheme=scheme, split=False
    )
    sequence = [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()]
    if add_prefix_space:
        sequence.append(decoders.Strip(content=" ", left=1))
    tokenizer.decoder = decoders.Sequence(sequence)
    return f"Metaspace(prepend_scheme={scheme!r}), no normalizer (legacy={legacy})"


def _qwen2(tokenizer: Tokenizer, config: Mapping[str, Any]) -> str:
    """Qwen2Tokenizer.__init__: NFC, the class's split regex, then ByteLevel."""
    add_prefix_space = bool(config.get("add_prefix_space") or False)
    _bpe(tokenizer, fuse_unk=False, byte_fallback=False)
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN2_PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=add_prefix_space, use_regex=False),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    return f"NFC + Qwen2 split regex + ByteLevel(add_prefix_space={add_prefix_space})"


def _gpt2(tokenizer: Tokenizer, config: Mapping[str, Any]) -> str:
    """GPT2Tokenizer.__init__: no normalizer, ByteLevel with its own regex."""
    add_prefix_space = bool(config.get("add_prefix_space") or False)
    _bpe(tokenizer, fuse_unk=False, byte_fallback=False)
    tokenizer.normalizer = None
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=add_prefix_space)
    tokenizer.decoder = decoders.ByteLevel()
    return f"ByteLevel(add_prefix_space={add_prefix_space})"


def _bpe(tokenizer: Tokenizer, *, fuse_unk: bool, byte_fallback: bool) -> None:
    """The model options a class passes to its fresh BPE (the vocab and merges are kept)."""
    model = tokenizer.model
    if type(model).__name__ != "BPE":
        raise ValueError(f"expected a BPE model in tokenizer.json, found {type(model).__name__}")
    model.unk_token = None
    model.fuse_unk = fuse_unk
    model.byte_fallback = byte_fallback
    model.dropout = None
    model.ignore_merges = False
    model.continuing_subword_prefix = None
    model.end_of_word_suffix = None


RESETS_SPECIAL_FLAGS = frozenset({"Qwen2Tokenizer"})
_Rule = Callable[[Tokenizer, Mapping[str, Any]], str]
REBUILDING_CLASSES: dict[str, _Rule] = {
    "LlamaTokenizer": _llama,
    "Qwen2Tokenizer": _qwen2,
    "GPT2Tokenizer": _gpt2,
}


def _added_tokens(tokenizer: Tokenizer, config: Mapping[str, Any]) -> None:
    """The config's `added_tokens_decoder` (its flags win over tokenizer.json's), then named
    and extra special tokens the vocabulary lacks, added as special (TokenizersBackend.__init__)."""
    decoder = config.get("added_tokens_decoder")
    tokens: list[AddedToken] = []
    if isinstance(decoder, Mapping):
        for _, entry in sorted(decoder.items(), key=lambda item: int(item[0])):
            if isinstance(entry, Mapping) and isinstance(entry.get("content"), str):
                flags = {k: bool(entry[k]) for k in _FLAGS if k in entry}
                tokens.append(AddedToken(entry["content"], **flags))
    if tokens:
        tokenizer.add_tokens(tokens)
    known = {t.content for t in tokenizer.get_added_tokens_decoder().values()}
    missing = [t for t in _special_tokens(config) if t not in known]
    if missing:
        tokenizer.add_tokens([AddedToken(t, special=True) for t in missing])


def _special_tokens(config: Mapping[str, Any]) -> list[str]:
    """The named special tokens, then the extra (additional) special tokens, once each."""
    extra = config.get("extra_special_tokens") or config.get("additional_special_tokens") or []
    named = [token_text(config.get(k)) for k in SPECIAL_TOKEN_KEYS]
    if isinstance(extra, list):
        named += [token_text(t) for t in extra]
    return list(dict.fromkeys(t for t in named if t))


_FLAGS = ("single_word", "lstrip", "rstrip", "normalized", "special")


def token_text(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping) and isinstance(value.get("content"), str):
        return str(value["content"])  # an AddedToken saved as a dict
    return None


def build_backend(tokenizer: Tokenizer, config: Mapping[str, Any]) -> LoadedBackend:
    """Apply transformers 5's loading rules to a tokenizer read from tokenizer.json, in place."""
    name = tokenizer_class(config)
    rule = REBUILDING_CLASSES.get(name)
    if rule is not None:
        applied = rule(tokenizer, config)
    else:
        applied = "tokenizer.json as it is"
        if name not in AS_IS_CLASSES:
            logger.warning(
                "no transformers 5 loading rule for this tokenizer class: tokenizer.json is "
                "used as it is, and counts may differ from vLLM's",
                extra={"tokenizer_class": name},
            )
            applied += f" (no rule for {name})"
    # tokenizer.json's post-processor is kept in every case: transformers drops add_bos_token
    # and add_eos_token from the config when a tokenizer.json exists.
    if tokenizer.post_processor is None:
        applied += ", no post-processor"
    _added_tokens(tokenizer, config)
    if name in RESETS_SPECIAL_FLAGS:
        # Qwen2Tokenizer.__init__ ends with add_tokens([AddedToken(t, special=True) for t in
        # all_special_tokens]): default flags (no lstrip/rstrip) for every special token.
        specials = _special_tokens(config)
        tokenizer.add_tokens([AddedToken(t, special=True) for t in specials])
    # transformers encodes with truncation and padding off unless asked (__call__ resets both)
    tokenizer.no_truncation()
    tokenizer.no_padding()
    tokenizer.encode_special_tokens = bool(config.get("split_special_tokens", False))
    return LoadedBackend(tokenizer=tokenizer, tokenizer_class=name, rule=applied)
