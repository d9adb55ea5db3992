"""Which cuts are safe for a tokenizer's pipeline (docs/TOKENS.md, "Long texts").

`splitter_for` reads the backend's normalizer, pre-tokenizer and model and returns the
gateway.tokens.chunking.Splitter that cuts where that pipeline splits anyway, or None.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

from gateway.tokens.chunking import (
    DIGITS_GROUPS_OF_3,
    DIGITS_RUN,
    DIGITS_SINGLE,
    META,
    AddedTokens,
    Splitter,
)
from gateway.tokens.deepcuts import DeepCuts

if TYPE_CHECKING:
    from tokenizers import Tokenizer

# The split regexes this module knows, with how each treats a run of digits.
QWEN2_REGEX = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"""
    r"""| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
)
LLAMA3_REGEX = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"""
    r"""| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
)
_KNOWN_SPLIT_REGEXES = {QWEN2_REGEX: DIGITS_SINGLE, LLAMA3_REGEX: DIGITS_GROUPS_OF_3}

# ByteLevel families. In all three regexes a space is only ever the FIRST character of a
# match or part of a whitespace-only match, and no alternative reads past a non-space
# character it cannot consume except to find that it stops there. So between a non-space
# character x and a space, one match ends and the next begins, whatever follows; the same
# holds between a printable non-digit and an ASCII digit (only the number alternative takes
# digits, and it takes no other character), and between an ASCII digit and a printable
# non-digit. Python's `\s` is a superset of the Unicode White_Space that the tokenizer's
# regex engine uses, so `[^\s]` is never whitespace there. The character after the cut is
# ASCII, which NFC never composes with what precedes it.
_BYTE_LEVEL_CUTS = r"[^\s](?= )|[!-/:-~](?=[0-9])|[0-9](?=[!-/:-~])"
# Between a letter (or a number, in Python's `[^\W\d_]`) and a symbol: the letter and number
# alternatives take no symbol, and the one alternative that takes a symbol before letters
# (a contraction, or Qwen2's `[^\r\n\p{L}\p{N}]?\p{L}+`) begins with it. ASCII symbols for
# every family; for those without NFC also the combining diacritics (U+0300-U+036F), which
# no regex here takes with a letter before them (a run of "e" + U+0301 has no other cut).
_LETTER_CUTS = r"|[^\W\d_](?=[!-/:-@\[-`{-~])"
_MARK_CUTS = r"|[^\W\d_](?=[\u0300-\u036f])"
# Qwen2: `\p{N}` alone, so also between two digits.
_SINGLE_DIGIT_CUTS = r"|[0-9](?=[0-9])"
# A byte-fallback token (<0x0A>) stands for one byte, not for its six characters.
_BYTE_TOKEN = re.compile(r"<0x[0-9A-Fa-f]{2}>")


def splitter_for(tokenizer: Tokenizer) -> Splitter | None:
    """The splitter for a loaded backend, or None when no cut is known to be safe for its
    normalizer, pre-tokenizer and model (the text is then counted whole)."""
    model = tokenizer.model
    if type(model).__name__ != "BPE" or model.dropout not in (None, 0.0):
        return None
    added = AddedTokens.of(tokenizer)
    normalizer = _state(tokenizer.normalizer)
    if normalizer is not None:
        if normalizer.get("type") != "NFC":
            return None
        # added tokens matched after NFC: the cut's neighbourhood could differ there
        if any(t.normalized for t in tokenizer.get_added_tokens_decoder().values()):
            return None
    pre = _state(tokenizer.pre_tokenizer)
    digits = _byte_level_digits(pre)
    if digits is not None:
        cuts = _BYTE_LEVEL_CUTS + _LETTER_CUTS + (_MARK_CUTS if normalizer is None else "")
        cuts += _SINGLE_DIGIT_CUTS if digits == DIGITS_SINGLE else ""
        return Splitter(
            cuts=cuts,
            added=added,
            digits=digits,
            deep=_deep_cuts(tokenizer, digits, normalizer, added),
        )
    if normalizer is None and pre is not None and _is_metaspace_without_split(pre):
        return _metaspace_splitter(_state(model) or {}, pre, added)
    return None


def _deep_cuts(
    tokenizer: Tokenizer, digits: str, normalizer: dict[str, Any] | None, added: AddedTokens
) -> DeepCuts | None:
    """Cuts inside a long pre-token (gateway.tokens.deepcuts), for a plain BPE whose
    offsets are the text's (the word ids and offsets of a window show its token boundaries).
    Not with an added token that strips whitespace or matches single words: one just past
    a window's end could take the whitespace the window ends with."""
    model = tokenizer.model
    if model.continuing_subword_prefix or model.end_of_word_suffix or added.flagged:
        return None
    post = tokenizer.post_processor
    if post is not None and '"trim_offsets":true' in post.__getstate__().decode().replace(" ", ""):
        return None
    return DeepCuts(
        tokenizer,
        newline_words=digits in (DIGITS_SINGLE, DIGITS_GROUPS_OF_3),
        number_runs=digits == DIGITS_RUN,
        nfc=normalizer is not None,
        added=added,
    )


def _state(component: Any) -> dict[str, Any] | None:
    """A tokenizers component's own JSON (what tokenizer.json holds for it)."""
    if component is None:
        return None
    state: dict[str, Any] = json.loads(component.__getstate__())
    return state


def _byte_level_digits(pre: Any) -> str | None:
    """How a known ByteLevel pipeline groups digits, or None for any other pipeline."""
    if not isinstance(pre, dict):
        return None
    if pre.get("type") == "ByteLevel":
        if pre.get("add_prefix_space") or not pre.get("use_regex", True):
            return None
        return DIGITS_RUN
    steps = pre.get("pretokenizers") if pre.get("type") == "Sequence" else None
    if not isinstance(steps, list) or len(steps) != 2:
        return None
    split, level = steps
    if (
        split.get("type") != "Split"
        or split.get("behavior") != "Isolated"
        or split.get("invert")
        or level.get("type") != "ByteLevel"
        or level.get("add_prefix_space")
        or level.get("use_regex", True)
    ):
        return None
    pattern = (split.get("pattern") or {}).get("Regex")
    return _KNOWN_SPLIT_REGEXES.get(pattern) if isinstance(pattern, str) else None


def _is_metaspace_without_split(pre: Any) -> bool:
    return (
        isinstance(pre, dict)
        and pre.get("type") == "Metaspace"
        and pre.get("replacement") == META
        and not pre.get("split", True)
    )


def _metaspace_splitter(
    model: dict[str, Any], pre: dict[str, Any], added: AddedTokens
) -> Splitter | None:
    vocab: dict[str, int] = model.get("vocab") or {}
    merges = model.get("merges") or []
    byte_fallback = bool(model.get("byte_fallback"))
    if byte_fallback:
        for merge in merges:
            parts = merge.split(" ") if isinstance(merge, str) else merge
            if any("<0x" in part and _BYTE_TOKEN.fullmatch(part) for part in parts):
                return None  # byte tokens that merge: a byte could join its neighbours
    pairs: set[str] = set()
    for token in vocab:
        if byte_fallback and _BYTE_TOKEN.fullmatch(token):
            continue
        pairs.update(token[i - 1 : i + 1] for i in range(1, len(token)))
    prepends = pre.get("prepend_scheme", "always") in ("first", "always")
    if prepends and META not in vocab:
        return None
    # cuts before a space after a non-space, and before a character that no token holds
    # after another one (digits in the Llama 2 vocabulary, and characters it lacks, which
    # become byte tokens); _safe checks the exact pair
    joined = {pair[1] for pair in pairs} | {" ", META}
    cuts = r"[^ ▁](?=[ ▁])|.(?=[^" + re.escape("".join(sorted(joined))) + "])"
    return Splitter(cuts=cuts, added=added, vocab_pairs=frozenset(pairs), prepends=prepends)
