"""A cheap lower bound on a text's token count (docs/TOKENS.md, "A lower bound").

Every token is a vocabulary string of at most `len(token)` characters. Give each character
c of the text the weight 1/L(c), where L(c) is the length of the longest vocabulary token
that holds c: a token then weighs at most len(token) * 1/len(token) = 1, so the text has at
least as many tokens as its characters weigh. Characters that no token holds in a model
with byte fallback become one token per byte (weight 1). Counting the few characters with
the smallest L (digits: L = 1 for Qwen2 and Llama 2, 3 for Llama 3) and giving every other
character 1/(longest token) needs only `str.count`: nothing the size of the text.

Added tokens (`<|im_end|>`) hold characters without being vocabulary tokens: at most one
match starts at each occurrence of an added token's first character (plus one reaching in
from before the text), and each match takes at most its length in characters, so those are
subtracted first. A normalizer may merge characters (NFC composes "e" and U+0301): with one,
only characters that no canonical composition starts from are weighed, and no others.
"""

from __future__ import annotations

import bisect
import itertools
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tokenizers import Tokenizer

# ASCII characters that begin some character's canonical decomposition, so NFC can merge
# them with what follows (tests/gateway/tokens/test_bounds.py derives this from unicodedata).
NFC_COMPOSABLE_ASCII = frozenset(";<=>`ABCDEFGHIJKLMNOPRSTUVWXYZabcdefghijklmnoprstuvwxyz")
# The printable ASCII characters a bound may weigh one by one (whitespace is left out:
# templates may trim it); those held by no token longer than _LONGEST_COUNTED, at most
# _MOST_COUNTED of them (each is one `str.count`), the heaviest first.
_CANDIDATES = tuple(map(chr, range(0x21, 0x7F)))
_MOST_COUNTED = 24
_LONGEST_COUNTED = 16
_BYTE_TOKEN = re.compile(r"<0x[0-9A-Fa-f]{2}>")


@dataclass(frozen=True)
class LowerBound:
    # (character, longest token holding it), heaviest first
    counted: tuple[tuple[str, int], ...]
    # longest token, in characters; None when a normalizer may merge characters
    longest: int | None
    added_first: tuple[str, ...]  # first characters of the added tokens
    added_longest: int
    added_holds: dict[str, int]  # character -> most of it in one added token

    @classmethod
    def of(cls, tokenizer: Tokenizer) -> LowerBound:
        byte_fallback = bool(getattr(tokenizer.model, "byte_fallback", False))
        vocab = [
            token
            for token in tokenizer.get_vocab(with_added_tokens=False)
            if not (byte_fallback and _BYTE_TOKEN.fullmatch(token))  # one byte each
        ]
        # longest first, one string: the first occurrence of a character is in the longest
        # token that holds it (a Python loop over 150,000 tokens took seconds)
        vocab.sort(key=len, reverse=True)
        joined = "\n".join(vocab)
        ends = list(itertools.accumulate(len(t) + 1 for t in vocab))
        normalizes = tokenizer.normalizer is not None
        weighed: list[tuple[str, int]] = []
        for c in _CANDIDATES:
            if normalizes and c in NFC_COMPOSABLE_ASCII:
                continue
            at = joined.find(c)
            if at != -1:
                weighed.append((c, len(vocab[bisect.bisect_right(ends, at)])))
            elif byte_fallback:
                weighed.append((c, 1))  # becomes a byte token of its own
        weighed.sort(key=lambda item: item[1])
        longest = len(vocab[0]) if vocab else 1
        added = [t.content for t in tokenizer.get_added_tokens_decoder().values() if t.content]
        holds: dict[str, int] = {}
        for content in added:
            for c in set(content):
                holds[c] = max(holds.get(c, 0), content.count(c))
        return cls(
            counted=tuple(w for w in weighed[:_MOST_COUNTED] if w[1] <= _LONGEST_COUNTED),
            longest=None if normalizes else longest,
            added_first=tuple(sorted({t[0] for t in added})),
            added_longest=max((len(t) for t in added), default=0),
            added_holds=holds,
        )

    def tokens(self, texts: Iterable[str]) -> int:
        """At most the tokens of each text, summed (a sum of bounds is a bound of a sum)."""
        total = 0.0
        for text in texts:
            total += self._weight(text)
        return int(total)

    def _weight(self, text: str) -> float:
        if text and (text[0].isspace() or text[-1].isspace()):
            text = text.strip()  # what a template's `trim` leaves (a copy only then)
        if not text:
            return 0.0
        # added-token matches that may hold this text's characters
        matches = 1 + sum(text.count(c) for c in self.added_first) if self.added_first else 0
        weight = 0.0
        counted = 0
        for c, longest in self.counted:
            n = text.count(c)
            counted += n
            outside = n - matches * self.added_holds.get(c, 0)
            if outside > 0:
                weight += outside / longest
        if self.longest is not None:
            rest = len(text) - counted - matches * self.added_longest
            if rest > 0:
                weight += rest / self.longest
        return weight
