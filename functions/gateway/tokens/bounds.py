"""A cheap lower bound on a text's token count (docs/TOKENS.md, "A lower bound").

Every token is a vocabulary string of at most `len(token)` characters. Give each character
c of the text the weight 1/L(c), where L(c) is the length of the longest vocabulary token
that holds what the tokenizer makes of c: a token then weighs at most
len(token) * 1/len(token) = 1, so the text has at least as many tokens as its characters
weigh. Characters that no token holds in a model with byte fallback become one token per
byte (weight 1). Counting the few characters with the smallest L (digits: L = 1 for Qwen2
and Llama 2, 3 for Llama 3; Llama 2's newlines and tabs, byte tokens: 1) and giving every
other character 1/(longest token) needs only `str.count`: nothing the size of the text.

What the tokenizer makes of a character is read from its normalizer and pre-tokenizer (their
JSON): a Sequence of `Prepend` and `Replace` of one character by one character (Llama 2's raw
file: " " -> "▁"), `Metaspace` (" " -> "▁") and `ByteLevel` (" " -> "Ġ", "\\n" -> "Ċ", as the
library maps it) keep each character one character; splits keep every character. A Unicode
normalizer (NFC) may merge characters (it composes "e" and U+0301): with one, only characters
that no canonical composition starts from are weighed, and no others. Anything else (another
normalizer or pre-tokenizer, a model other than BPE) weighs nothing: the bound is 0.

Added tokens (`<|im_end|>`) hold characters without being vocabulary tokens, so what their
matches may hold is subtracted first: matches do not overlap, so at most `str.count(p)` of
them begin with a pattern p that each begins with (a few added tokens: each one's own text,
Mistral's `<s>`, `</s>`, `<unk>`; more: their common prefix per first character, Llama 3's
`<|`), plus one reaching in from before the text, each holding at most its length.
Whitespace at a text's ends is weighed unless the caller says that a chat template may trim
it (`trimmed`).
"""

from __future__ import annotations

import bisect
import itertools
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from gateway.tokens.charmap import CANDIDATES, WHITESPACE, CharMap, char_map

if TYPE_CHECKING:
    from tokenizers import Tokenizer

__all__ = ["NFC_COMPOSABLE_ASCII", "WHITESPACE", "LowerBound", "template_cuts", "template_trims"]

# ASCII characters that begin some character's canonical decomposition, so NFC can merge
# them with what follows (tests/gateway/tokens/test_bounds.py derives this from unicodedata).
NFC_COMPOSABLE_ASCII = frozenset(";<=>`ABCDEFGHIJKLMNOPRSTUVWXYZabcdefghijklmnoprstuvwxyz")
# A chat template that may strip its contents' ends: jinja's `trim`, Python's str methods.
_TRIMMING = re.compile(r"\b(?:trim|strip|lstrip|rstrip)\b")
# The ASCII characters a bound may weigh one by one: whitespace (always, when it tells more
# than the rest's weight), then those held by no token longer than _LONGEST_COUNTED, the
# heaviest first; at most _MOST_COUNTED in all (each is one `str.count`).
_MOST_COUNTED = 24
_LONGEST_COUNTED = 16
_BYTE_TOKEN = re.compile(r"<0x[0-9A-Fa-f]{2}>")
# Added tokens counted one pattern each; more, under at most this many common prefixes.
_MOST_ADDED_COUNTED = 8
_SEPARATOR = "\x00"  # between vocabulary tokens in one string; never looked up


# A chat template that may copy part of a content only (Qwen3 keeps what follows an
# assistant content's last `</think>`): a split, a replace, a slice.
_CUTTING = re.compile(r"\.split\(|\|\s*replace\b|\.replace\(|\[\s*-?\d*\s*:")


def template_cuts(source: str) -> bool:
    """Whether a chat template may copy less than a whole content (beyond trimming its
    ends): decided once, from its source, erring towards yes. Where it cannot, an assistant
    content is copied whole (Llama 3, Mistral, TinyLlama) and the bound may read it too."""
    return _CUTTING.search(source) is not None


def template_trims(source: str) -> bool:
    """Whether a chat template may strip whitespace from what it copies (Llama 3's `trim`,
    Qwen3's `strip`/`lstrip`/`rstrip`): decided once, from its source, erring towards yes."""
    return _TRIMMING.search(source) is not None


def _vocabulary(tokenizer: Tokenizer, *, byte_fallback: bool) -> tuple[str, list[str]]:
    """The vocabulary, longest first, and one string of it: the first occurrence of a
    character is in the longest token that holds it (a Python loop over 150,000 tokens
    took seconds)."""
    vocab = [
        token
        for token in tokenizer.get_vocab(with_added_tokens=False)
        if not (byte_fallback and _BYTE_TOKEN.fullmatch(token))  # one byte each
    ]
    vocab.sort(key=len, reverse=True)
    return _SEPARATOR.join(vocab), vocab


@dataclass(frozen=True)
class _Matches:
    """Added-token matches that may begin at each occurrence of `pattern` in a text: at most
    `str.count(pattern)` of them (they do not overlap, and each holds the pattern at its
    start), each holding at most `chars` characters of the text, `holds[c]` of them c."""

    pattern: str
    chars: int
    holds: dict[str, int]


def _starts(content: str, images: frozenset[str], pipeline: CharMap) -> list[str]:
    """What every match of an added token begins with, in the text as it is. A token matched
    after the normalizer (`images`: what the normalizer turns other characters into) is
    matched as far as its first such image literally, else at any character that becomes
    its first."""
    cut = next((i for i, ch in enumerate(content) if ch in images), len(content))
    if cut:
        return [content[:cut]]
    first = content[0]
    return sorted({first, *(c for c, image in pipeline.normalized.items() if image == first)})


def _common_prefix(patterns: list[str]) -> str:
    low, high = min(patterns), max(patterns)  # the others share what these two share
    same = next(
        (i for i, (a, b) in enumerate(zip(low, high, strict=False)) if a != b),
        min(map(len, (low, high))),
    )
    return low[:same]


def _by_next(group: list[_Matches]) -> list[list[_Matches]]:
    """A group split by the character after its common prefix (a pattern that ends there
    stays in a part of its own)."""
    depth = len(_common_prefix([m.pattern for m in group]))
    parts: dict[str, list[_Matches]] = {}
    for m in group:
        parts.setdefault(m.pattern[depth : depth + 1], []).append(m)
    return list(parts.values())


def _leverage(group: list[_Matches]) -> float:
    """Characters one occurrence of the group's pattern may take off, per its own."""
    return max(m.chars for m in group) / len(_common_prefix([m.pattern for m in group]))


def _grouped(found: list[_Matches]) -> list[_Matches]:
    """Many added tokens under at most _MOST_ADDED_COUNTED common prefixes (or under those
    of one split where they first differ, if there are more): the group whose prefix may
    take most off per character split first (Llama 3: `<|` to `<|reserved_special_token_`,
    `<|eot_id|>`, `<|end_of_text|>`, ...), so that a text of would-be prefixes cannot cancel
    the weight of the rest."""
    groups = _by_next(found)
    while True:
        ranked = sorted((g for g in groups if len(g) > 1), key=_leverage, reverse=True)
        for group in ranked:
            parts = _by_next(group)
            if len(groups) - 1 + len(parts) <= _MOST_ADDED_COUNTED:
                groups = [g for g in groups if g is not group] + parts
                break
        else:
            break
    return [
        _Matches(
            _common_prefix([m.pattern for m in group]),
            max(m.chars for m in group),
            {c: max(m.holds.get(c, 0) for m in group) for m in group for c in m.holds},
        )
        for group in groups
    ]


def _added(tokenizer: Tokenizer, pipeline: CharMap) -> tuple[tuple[_Matches, ...], int, bool]:
    """(the patterns added-token matches begin with, the longest added token, whether a token
    may swallow the whitespace around it: `lstrip`/`rstrip`). A few added tokens are each
    counted on their own; more are grouped under common prefixes (`_grouped`), one
    `str.count` each."""
    added = [t for t in tokenizer.get_added_tokens_decoder().values() if t.content]
    images = frozenset(image for c, image in pipeline.normalized.items() if image != c)
    found: list[_Matches] = []
    for token in added:
        mapped = images if token.normalized else frozenset()
        holds = {c: token.content.count(c) for c in set(token.content)}
        for c, image in pipeline.normalized.items() if mapped else ():
            if image != c:  # c stands for its image there
                holds[c] = token.content.count(c) + token.content.count(image)
        for start in _starts(token.content, mapped, pipeline):
            found.append(_Matches(start, len(token.content), {c: n for c, n in holds.items() if n}))
    found = _grouped(found) if len(found) > _MOST_ADDED_COUNTED else found
    longest = max((len(t.content) for t in added), default=0)
    return tuple(found), longest, any(t.lstrip or t.rstrip for t in added)


@dataclass(frozen=True)
class LowerBound:
    # (character, longest token holding it), heaviest first
    counted: tuple[tuple[str, int], ...]
    # longest token, in characters; None when characters may merge or vanish
    longest: int | None
    added: tuple[_Matches, ...]  # where added-token matches may begin
    added_longest: int  # what one match reaching in from before a text may hold of it

    @classmethod
    def of(cls, tokenizer: Tokenizer) -> LowerBound:
        pipeline = char_map(tokenizer)
        if not pipeline.known:
            return cls(counted=(), longest=None, added=(), added_longest=0)
        byte_fallback = bool(getattr(tokenizer.model, "byte_fallback", False))
        joined, vocab = _vocabulary(tokenizer, byte_fallback=byte_fallback)
        ends = list(itertools.accumulate(len(t) + 1 for t in vocab))
        longest = len(vocab[0]) if vocab else 1
        added, added_longest, swallows = _added(tokenizer, pipeline)
        # Every character lands in some token of at most `longest` characters only when
        # none can vanish: byte fallback or ByteLevel's alphabet, no merging normalizer, and
        # no added token that swallows the whitespace beside it.
        covered = (byte_fallback or pipeline.byte_level) and not pipeline.merges
        covered = covered and not swallows
        weighed: list[tuple[str, int]] = []
        for c in CANDIDATES:
            image = pipeline.images[c]
            if (pipeline.merges and c in NFC_COMPOSABLE_ASCII) or len(image) != 1:
                continue  # left to the rest's weight, if any
            at = joined.find(image) if image != _SEPARATOR else -1
            if at != -1:
                held = len(vocab[bisect.bisect_right(ends, at)])
            elif byte_fallback:
                held = 1  # becomes a byte token of its own
            else:
                continue
            if swallows and c in WHITESPACE:
                continue
            if (c in WHITESPACE or held <= _LONGEST_COUNTED) and not (covered and held >= longest):
                weighed.append((c, held))  # (as much as the rest's weight: left to it)
        weighed.sort(key=lambda item: (item[0] not in WHITESPACE, item[1]))
        return cls(
            counted=tuple(sorted(weighed[:_MOST_COUNTED], key=lambda item: item[1])),
            longest=longest if covered else None,
            added=added,
            added_longest=added_longest,
        )

    def tokens(self, texts: Iterable[str], *, trimmed: bool) -> int:
        """At most the tokens of each text, summed (a sum of bounds is a bound of a sum).
        `trimmed`: the texts reach the tokenizer with whitespace at their ends stripped, or
        may (a chat template that trims); else they reach it whole."""
        total = 0.0
        for text in texts:
            total += self._weight(text, trimmed=trimmed)
        return int(total)

    def _weight(self, text: str, *, trimmed: bool) -> float:
        if trimmed and text and (text[0].isspace() or text[-1].isspace()):
            text = text.strip()  # what a template's `trim` leaves (a copy only then)
        if not text:
            return 0.0
        # added-token matches that may hold this text's characters: those beginning in it,
        # and one reaching in from before it (it holds less than its length of the text)
        matches = [(text.count(m.pattern), m) for m in self.added]
        held = self.added_longest + sum(n * m.chars for n, m in matches)
        weight = 0.0
        counted = 0
        for c, longest in self.counted:
            n = text.count(c)
            counted += n
            inside = sum(k * m.holds.get(c, 0) for k, m in matches)
            outside = n - inside - (self.added_longest if matches else 0)
            if outside > 0:
                weight += outside / longest
        if self.longest is not None:
            rest = len(text) - counted - held
            if rest > 0:
                weight += rest / self.longest
        return weight
