"""What a cut inside a pre-token needs to know of a ByteLevel tokenizer and of Unicode
(gateway.tokens.deepcuts): ByteLevel's byte-to-character table, the character classes of
the split regexes, NFC's stable positions, and the merge rules (`Merges`) with the moves
a frontier can make in a run of one character."""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tokenizers import Tokenizer

# Unicode White_Space, what `\s` means to the tokenizer's regex engine (Python's `\s` adds
# \x1c-\x1f); the line breaks of `[\r\n]`.
WHITE_SPACE = frozenset(
    "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008"
    "\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)


def _byte_to_unicode() -> dict[int, str]:
    """GPT-2's byte-to-character table, which `tokenizers`' ByteLevel uses."""
    printable = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    table = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return table


_BYTE_LEVEL = _byte_to_unicode()


def byte_level(text: str) -> str:
    return "".join(_BYTE_LEVEL[b] for b in text.encode("utf-8"))


def char_class(c: str) -> str | None:
    """The class whose runs the split regexes take whole: L, N, S (White_Space), O (the
    rest), or None for an unassigned code point (its category may differ between Unicode
    versions)."""
    if c in WHITE_SPACE:
        return "S"
    category = unicodedata.category(c)
    if category == "Cn":
        return None
    return category[0] if category[0] in "LN" else "O"


def nfc_stable_start(c: str) -> bool:
    """c composes with nothing before it under NFC (conservatively: ASCII, Latin-1, CJK
    ideographs, Hangul syllables, kana, emoji planes), so NFC of a text cut before c is the
    two parts' NFC."""
    o = ord(c)
    return (
        o < 0x300
        or 0x3040 <= o <= 0x3098
        or 0x30A0 <= o <= 0x30FF
        or 0x3400 <= o <= 0x4DBF
        or 0x4E00 <= o <= 0x9FFF
        or 0xAC00 <= o <= 0xD7A3
        or 0x1F000 <= o <= 0x1FAFF
    )


def nfc_stable_marks(text: str, start: int, cut: int) -> bool:
    """The cut lies in a run of one combining mark c that a starter (or the text's or the
    piece's start) precedes and a starter (or the end) follows: NFC may compose the starter
    with the first c, blocks every later c (same combining class) and reorders nothing, so
    NFC of text[start:] cut there is the parts' NFC."""
    c = text[cut]
    if unicodedata.combining(c) == 0 or text[cut - 1] != c:
        return False
    after = re.compile("[^" + re.escape(c) + "]").search(text, cut)
    if after is not None and unicodedata.combining(after.group()) != 0:
        return False
    before = start + len(text[start:cut].rstrip(c)) - 1
    return before < start or unicodedata.combining(text[before]) == 0


@dataclass
class Merges:
    """The BPE rules a chain may use. With monotone merges, "x y" -> rank. Otherwise ranks
    do not matter (no rising order), and only whether a rule may exist is asked: every
    rule's result is a vocabulary token (`tokenizers` refuses a file where one is not), so
    x, y and x + y in the vocabulary over-approximates the rules, which only lets a chain
    reach further (fewer cuts, never a wrong one) and keeps no table in memory."""

    monotone: bool
    longest: int  # the vocabulary's longest token, in ByteLevel characters
    token_id: Callable[[str], int | None]
    ranks: dict[str, int] | None
    # per run character: how far a frontier can move inside its run (None: unbounded)
    _run_moves: dict[str, int | None] = field(default_factory=dict)

    @classmethod
    def of(cls, tokenizer: Tokenizer) -> Merges:
        model = tokenizer.model
        state = model.__getstate__()
        text = state.decode() if isinstance(state, bytes) else str(state)
        # only the merges (the last member) are parsed: the vocabulary is asked of the model
        at = text.rindex('"merges":') + len('"merges":')
        merges, _ = json.JSONDecoder().raw_decode(text, at)
        del state, text
        ranks: dict[str, int] = {}
        made_by: dict[str, int] = {}
        for rank, merge in enumerate(merges):
            x, y = merge.split(" ") if isinstance(merge, str) else merge
            ranks.setdefault(f"{x} {y}", rank)
            made_by[x + y] = max(made_by.get(x + y, -1), rank)
        del merges
        monotone = all(
            made_by.get(x, -1) < rank and made_by.get(y, -1) < rank
            for key, rank in ranks.items()
            for x, y in (key.split(" "),)
        )
        del made_by
        ids = range(tokenizer.get_vocab_size(with_added_tokens=False))
        longest = max((len(t) for i in ids if (t := model.id_to_token(i))), default=1)
        return cls(
            monotone=monotone,
            longest=longest,
            token_id=model.token_to_id,
            ranks=ranks if monotone else None,
        )

    def rule(self, x: str, y: str) -> int | None:
        """The rank of the rule (x, y) (0 for any rule without monotone merges), or None."""
        if self.ranks is not None:
            return self.ranks.get(f"{x} {y}")
        return 0 if self.token_id(x + y) is not None else None

    def run_moves(self, c: str) -> int | None:
        """How far (in ByteLevel characters) a frontier can move inside a run of c (fact 3
        in the module's docstring): 0 when no rule splits at a boundary of c, the sum of the
        rules' left sides when the merges are monotone, else None."""
        if c not in self._run_moves:
            self._run_moves[c] = self._moves_in_run(byte_level(c))
        return self._run_moves[c]

    def _moves_in_run(self, unit: str) -> int | None:
        period = unit * (self.longest // len(unit) + 3)
        sides = range(1, self.longest + 1)
        lefts = [period[-k:] for k in sides if self.token_id(period[-k:]) is not None]
        rights = [period[:k] for k in sides if self.token_id(period[:k]) is not None]
        if not any(self.rule(x, y) is not None for x in lefts for y in rights):
            return 0  # no rule splits at a boundary of c: a frontier there never moves
        if self.ranks is None:
            return None
        inside = [key.split(" ") for key in self.ranks if key.replace(" ", "") in period]
        return sum(len(x) for x, _ in inside)
