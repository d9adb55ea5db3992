"""Exact token counts of long texts in bounded pieces (docs/TOKENS.md, "Long texts").

`tokenizers` keeps per byte of a text an alignment (16 bytes), per pre-token a normalized
string, and per token an id, a string, offsets and masks: a 3.8 MB prompt of digits took
1 GB to count whole. Here the text is cut at positions where the model's own pipeline
splits anyway, so that the pieces' counts add up to the whole text's count, and the pieces
are encoded a few at a time. Which positions are safe depends on the pre-tokenizer:

- ByteLevel after a split regex (Qwen2, Llama 3, GPT-2): a cut where one regex match ends
  and the next begins, chosen so that neither the text before it nor the text after it can
  make the regex match differently; BPE never crosses a pre-token.
- Metaspace without split (Llama 2, Mistral, TinyLlama): each segment between added tokens
  is ONE word for BPE, so a cut must lie between two characters that no vocabulary token
  holds side by side (then no merge can cross it), and a piece must not gain the `▁` the
  pre-tokenizer prepends to a text's start.
- Any other pipeline: no cut, the text is counted whole.

gateway.tokens.cuts decides which of these applies to a backend; this module cuts and counts.

A cut is also never inside, or (where it matters) next to, an added token.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from gateway.tokens.added import AddedTokens

if TYPE_CHECKING:
    from tokenizers import Tokenizer

    from gateway.tokens.deepcuts import DeepCuts

__all__ = ["AddedTokens", "Piece", "Splitter", "count_in_pieces"]

# A text longer than this is counted in pieces of about this many characters; shorter
# ones whole, as before (no change for ordinary prompts).
CHUNK_CHARS = 32_768
# Pieces encoded together in one encode_batch_fast call (which releases the GIL).
BATCH_CHARS = 131_072

DIGITS_SINGLE = "single"  # every number character is a match of its own (Qwen2)
DIGITS_GROUPS_OF_3 = "groups_of_3"  # \p{N}{1,3}: groups of 3 from the run's start (Llama 3)
DIGITS_RUN = "run"  # ` ?\p{N}+`: a run is one match (GPT-2's built-in ByteLevel regex)
_ASCII_DIGITS = frozenset("0123456789")
_LAST_NON_DIGIT = re.compile(r"[^0-9](?=[0-9]*\Z)")

# Metaspace with split=False turns " " into "▁" and prepends one "▁" per its scheme.
META = "▁"


@dataclass(frozen=True)
class Piece:
    text: str
    # tokens to take off this piece's count: the "▁" put before a piece that must not get
    # the one Metaspace prepends (that "▁" is one token and merges with nothing after it)
    extra: int
    # the piece's tokens when a cut inside a pre-token already counted them (deepcuts)
    tokens: int | None = None


# Candidates rejected in one window before the search moves on to the next window: a text
# built to offer only unsafe candidates costs a bounded search, and a longer piece.
_REJECTS_PER_WINDOW = 64
# A cut inside a pre-token is looked for while the piece is at most this many times the
# piece size (each try encodes the piece so far): past that the piece runs on whole.
_DEEP_TRIES = 8


class Splitter:
    """Cuts a text at positions where its token count is the sum of the pieces' counts."""

    def __init__(
        self,
        *,
        cuts: str,
        added: AddedTokens,
        digits: str | None = None,
        vocab_pairs: frozenset[str] | None = None,
        prepends: bool = False,
        deep: DeepCuts | None = None,
    ) -> None:
        # each alternative of `cuts` consumes the character before a cut, or none (a
        # lookahead): a cut is where a match ends; before an added token is one too
        if added.splitting:
            cuts += "|(?=[" + re.escape("".join(added.splitting)) + "])"
        self._cuts = re.compile(cuts, re.DOTALL)
        self._added = added
        self._digits = digits
        self._vocab_pairs = vocab_pairs  # Metaspace: adjacent characters inside a token
        self._prepends = prepends  # Metaspace: a piece's start would get a "▁"
        self._deep = deep  # ByteLevel: cuts inside one long pre-token

    def pieces(self, text: str, *, size: int) -> Iterator[Piece]:
        """The text in pieces of at least `size` characters (the last may be shorter);
        a piece runs on past `size` up to the next safe cut, the text's end at worst."""
        start = 0
        target = size
        while len(text) - start > size:
            until = min(target + size, len(text))
            cut = self._next_cut(text, target, start, until)
            if cut is not None:
                yield self._piece(text, start, cut)
                start, target = cut, cut + size
                continue
            deep = None
            if self._deep is not None and until - start <= _DEEP_TRIES * size:
                deep = self._deep.cut(text, start, until)
            if deep is not None:
                cut, tokens = deep
                yield Piece(text[start:cut], 0, tokens)
                start, target = cut, cut + size
            elif until >= len(text):
                break
            else:
                target = until
        yield self._piece(text, start, len(text))

    def _piece(self, text: str, start: int, end: int) -> Piece:
        piece = text[start:end]
        if (
            start > 0
            and self._prepends
            and text[start] not in (" ", META)
            and not self._added.matched_at(text, start)
        ):
            return Piece(" " + piece, 1)
        return Piece(piece, 0)

    def _next_cut(self, text: str, target: int, previous: int, until: int) -> int | None:
        """The first safe cut at or after `target` and before `until`, or None."""
        window = max(target - previous, 1)
        pos = target
        aligned = self._digit_group_cut(text, target, previous)
        while pos < until:
            end = min(pos + window, until)
            rejects = 0
            found = self._cuts.search(text, pos - 1, end)
            while found is not None and rejects < _REJECTS_PER_WINDOW:
                cut = found.end()
                if aligned is not None and cut >= aligned:
                    return aligned
                if cut >= pos and self._safe(text, cut):
                    return cut
                rejects += 1
                found = self._cuts.search(text, found.start() + 1, end)
            if aligned is not None:
                return aligned
            pos = end
        return None

    def _safe(self, text: str, cut: int) -> bool:
        if cut >= len(text) or self._added.spanned(text, cut):
            return False
        if self._added.touches(text, cut, self._added.flagged):
            return False
        if self._added.matched_at(text, cut):
            return True  # a segment boundary, for every pre-tokenizer here
        if text[cut] in self._added.splitting and any(
            text.startswith(t, cut) for t in self._added.splitting[text[cut]]
        ):
            return False  # a token that may or may not be matched here
        if self._vocab_pairs is None:
            # one of the regex-level cuts (a consuming alternative ends here)
            found = self._cuts.match(text, cut - 1)
            return found is not None and found.end() == cut
        before, after = (META if c == " " else c for c in text[cut - 1 : cut + 1])
        if before + after in self._vocab_pairs:
            return False
        if after != META and self._prepends:
            # the piece gets a "▁" put before it (Piece.extra): it must merge with nothing,
            # and the cut must not be a segment's start, which Metaspace treats apart
            if META + after in self._vocab_pairs:
                return False
            return not self._added.touches(text, cut, self._added.contents)
        return True

    def _digit_group_cut(self, text: str, target: int, previous: int) -> int | None:
        """Llama 3's `\\p{N}{1,3}` groups a digit run in threes from its first digit: a cut
        inside a run of ASCII digits is safe at a multiple of 3 from where the run began."""
        if self._digits != DIGITS_GROUPS_OF_3 or target >= len(text):
            return None
        if text[target - 1] not in _ASCII_DIGITS or text[target] not in _ASCII_DIGITS:
            return None
        before = _LAST_NON_DIGIT.search(text, previous, target)
        if before is not None:
            if unicodedata.category(text[before.start()]).startswith("N"):
                return None  # the run began earlier, with a number that is not ASCII
            begun = before.start() + 1
        else:
            # the run began at or before `previous`, which is then itself the run's start
            # or a cut this method made: either way a multiple of 3 from the run's start
            begun = previous
        cut = begun + -(-(target - begun) // 3) * 3
        if cut >= len(text) or any(c not in _ASCII_DIGITS for c in text[target : cut + 1]):
            return None
        return cut if not self._added.spanned(text, cut) else None


def count_in_pieces(
    tokenizer: Tokenizer,
    splitter: Splitter,
    text: str,
    *,
    chunk_chars: int = CHUNK_CHARS,
    batch_chars: int = BATCH_CHARS,
) -> int:
    """Tokens of `text` with no special tokens added, encoding at most about
    `batch_chars` characters at once (plus the longest stretch without a safe cut)."""
    total = 0
    batch: list[str] = []
    size = 0
    for piece in splitter.pieces(text, size=chunk_chars):
        if piece.tokens is not None:
            total += piece.tokens
            continue
        total -= piece.extra
        batch.append(piece.text)
        size += len(piece.text)
        if size >= batch_chars:
            total += _encoded(tokenizer, batch)
            batch, size = [], 0
    if batch:
        total += _encoded(tokenizer, batch)
    return total


def _encoded(tokenizer: Tokenizer, texts: list[str]) -> int:
    # encode_batch_fast releases the GIL and skips offsets (see ChatTokenizer._count)
    return sum(len(e) for e in tokenizer.encode_batch_fast(texts, add_special_tokens=False))
