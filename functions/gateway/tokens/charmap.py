"""What a tokenizer makes of each ASCII character, read from its normalizer's and
pre-tokenizer's JSON (`__getstate__`): the lower bound's map (gateway.tokens.bounds,
docs/TOKENS.md "A lower bound").

A Sequence of `Prepend` and `Replace` of one character by one character (Llama 2's raw file:
" " -> "▁"), `Metaspace` (" " -> "▁") and `ByteLevel` (" " -> "Ġ", "\\n" -> "Ċ", as the
library itself maps it) keep each character one character, and splits keep every
character. A Unicode normalizer (NFC) may merge characters. Anything else is not read.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tokenizers import Tokenizer

WHITESPACE = (" ", "\t", "\n", "\r")
# The ASCII characters a bound may weigh one by one.
CANDIDATES = (*WHITESPACE, *map(chr, range(0x21, 0x7F)))
_UNICODE_FORMS = frozenset({"NFC", "NFD", "NFKC", "NFKD"})
# pre-tokenizers that split without dropping a character ("Removed" splits drop them)
_SPLITTING = frozenset({"Split", "Digits", "Punctuation", "UnicodeScripts"})


@dataclass(frozen=True)
class CharMap:
    """What a tokenizer's normalizer and pre-tokenizer make of one ASCII character."""

    known: bool  # every step is one this module reads; else the bound weighs nothing
    merges: bool  # a Unicode normalizer: characters may compose into one
    images: dict[str, str]  # candidate -> what the vocabulary holds of it (one character)
    normalized: dict[str, str]  # candidate -> what the normalizer alone makes of it
    byte_level: bool


def _state(component: Any) -> dict[str, Any] | None:
    if component is None:
        return None
    state: dict[str, Any] = json.loads(component.__getstate__())
    return state


def _steps(state: dict[str, Any] | None, key: str) -> list[dict[str, Any]]:
    if state is None:
        return []
    if state.get("type") == "Sequence":
        return [s for inner in state.get(key, []) for s in _steps(inner, key)]
    return [state]


def _normalizer(tokenizer: Tokenizer) -> tuple[bool, bool, dict[str, str]]:
    """(known, merges, what the normalizer makes of each candidate and replaced character)."""
    known, merges = True, False
    replaces: list[tuple[str, str]] = []
    for step in _steps(_state(tokenizer.normalizer), "normalizers"):
        kind = step.get("type")
        old = (step.get("pattern") or {}).get("String")
        new = step.get("content")
        if kind in _UNICODE_FORMS:
            merges = True
        elif kind == "Replace" and isinstance(old, str) and isinstance(new, str):
            known = known and len(old) == 1 and len(new) == 1
            replaces.append((old, new))
        elif kind != "Prepend":  # Prepend adds characters, changes none
            known = False
    if merges and replaces:
        known = False  # a replacement feeding a composition: not read here
    normalized = {c: c for c in (*CANDIDATES, *(old for old, _ in replaces))}
    for old, new in replaces:
        normalized = {c: new if image == old else image for c, image in normalized.items()}
    return known, merges, normalized


def char_map(tokenizer: Tokenizer) -> CharMap:
    from tokenizers.pre_tokenizers import ByteLevel

    known, merges, normalized = _normalizer(tokenizer)
    byte_level = False
    images = {c: normalized[c] for c in CANDIDATES}
    for step in _steps(_state(tokenizer.pre_tokenizer), "pretokenizers"):
        kind = step.get("type")
        if kind == "Metaspace":
            replacement = step.get("replacement", "▁")
            images = {c: replacement if image == " " else image for c, image in images.items()}
        elif kind == "ByteLevel":
            byte_level = True
            mapper = ByteLevel(add_prefix_space=False, use_regex=False)  # the library's map
            images = {
                c: "".join(piece for piece, _ in mapper.pre_tokenize_str(image))
                for c, image in images.items()
            }
        elif not (kind in _SPLITTING and step.get("behavior") != "Removed"):
            known = False
    if type(tokenizer.model).__name__ != "BPE":
        known = False  # an unknown word may become one unk token, whatever its length
    return CharMap(known, merges, images, normalized, byte_level)
