"""Exact cuts inside one long pre-token of a ByteLevel tokenizer (docs/TOKENS.md, "Cuts
inside a pre-token").

gateway.tokens.chunking cuts where the split regex ends one match and begins the next. A
stretch without such a place (a run of spaces, a word of letters or CJK characters, a run of
emoji) is one pre-token, and BPE runs over all of it. This module finds a cut inside it that
provably leaves the count unchanged, from three facts about HF `tokenizers`' BPE
(`models/bpe/word.rs`, `Word::merge_all`: a heap of (rank, position), the lowest rank first
and, for equal ranks, the leftmost):

1. **A cut is safe where the whole word's tokens have a boundary.** Cut a word w at b into
   L and R. Until a merge joins the last symbol of L with the first of R, each side changes
   only by its own merges, in the order its own heap would pop them (positions keep their
   order), so each side evolves as it would alone. If no such merge ever happens, which is
   what a token boundary at b in tokens(w) means, then tokens(w) = tokens(L) + tokens(R).

2. **A prefix's tokens agree with the whole word's up to a frontier.** Compare w with its
   prefix P = w[:m]. Call the frontier the left end of the first symbol where the two
   processes differ; it starts at m. Left of it both evolve alike (fact 1's argument). It
   moves only when, in one of the two, the symbol x ending at the frontier merges with the
   symbol y beginning there: the merge (x, y) is a rule, x ends at the frontier and y begins
   there in the text, and the frontier moves to x's start. So the frontier never passes the
   leftmost position that a chain of such rules reaches from m. When the merges are
   *monotone* (every rule ranks after every rule that produces either of its parts: true of
   Qwen2 and GPT-2's files, checked at load), the heap pops rank by rank, each rank in one
   left-to-right sweep, and the frontier moves at most once per rank: the chain's ranks must
   rise. Tokens of P that end left of that limit are tokens of w.

3. **In a run of one character c** every rule a chain can use there is one whose two sides
   join into a substring of c's bytes repeated. If no such rule splits at a character
   boundary, the frontier never leaves m. Otherwise, with monotone merges, the chain is a
   sequence of distinct such rules, so it moves at most the sum of their left sides' lengths.
   Without monotone merges (Llama 3's, Mistral's files: a rule may rank before the rule that
   makes its part) no bound follows, and no cut is made in such a run.

The text-level part: a window T = text[start:e] (start a safe cut) is encoded with offsets.
Where e lies inside a run of one character class (letters, numbers for GPT-2's regex, other
symbols, whitespace), T's pre-tokens are the whole text's, but for the one that holds e, of
which T's is a prefix with the same start (every alternative of these regexes takes a class
run greedily; for whitespace, Qwen2's and Llama 3's `\\s*[\\r\\n]+` ends at the run's last
newline, so when a newline follows e the prefix ends at T's last newline). A token boundary
of T inside that pre-token and left of the frontier limit is then a safe cut (fact 1), and
T's tokens before it are the whole text's tokens there: the piece's count is known without
encoding it again.
"""

from __future__ import annotations

import heapq
import re
import unicodedata
from typing import TYPE_CHECKING

from gateway.tokens.merges import (
    WHITE_SPACE,
    Merges,
    byte_level,
    char_class,
    nfc_stable_marks,
    nfc_stable_start,
)

if TYPE_CHECKING:
    from tokenizers import Tokenizer

    from gateway.tokens.added import AddedTokens

_NOT_WHITE = re.compile("[^" + re.escape("".join(sorted(WHITE_SPACE))) + "]")
_LINE_BREAKS = ("\n", "\r")
# Work allowed for one chain (rules looked up, frontiers visited) before the window is given
# up (no cut there, the piece runs on): a text built to make chains costly costs a bound.
CHAIN_BUDGET = 100_000
# Positions tried, leftwards from a window's end, for one inside a class run.
_END_TRIES = 64


class DeepCuts:
    """Cuts inside one long pre-token of a ByteLevel tokenizer (see the module docstring)."""

    def __init__(
        self,
        tokenizer: Tokenizer,
        *,
        newline_words: bool,
        number_runs: bool,
        nfc: bool,
        added: AddedTokens,
    ) -> None:
        self._tokenizer = tokenizer
        self._added = added  # no window ends inside an added token
        self._newline_words = newline_words  # `\s*[\r\n]+` is an alternative (Qwen2, Llama 3)
        self._classes = "LOSN" if number_runs else "LOS"  # GPT-2's ` ?\p{N}+` takes digit runs
        self._nfc = nfc
        self._merges: Merges | None = None

    def _rules(self) -> Merges:
        if self._merges is None:
            self._merges = Merges.of(self._tokenizer)
        return self._merges

    def cut(self, text: str, start: int, end: int) -> tuple[int, int] | None:
        """A safe cut in text[start:end] and the tokens of text[start:cut], or None."""
        merges = self._rules()
        e = self._window_end(text, start, end)
        if e is None or self._uncuttable_run(text, e, merges):
            return None
        encoding = self._tokenizer.encode_batch([text[start:e]], add_special_tokens=False)[0]
        offsets = [(a + start, b + start) for a, b in encoding.offsets]
        m = self._prefix_end(text, start, e)
        word = _word_holding(offsets, encoding.word_ids, m)
        if word is None:
            return None
        first, last = word
        ws = offsets[first][0]
        margin = merges.longest + 1  # neither part is a vocabulary token (ignore_merges)
        if self._nfc and not unicodedata.is_normalized("NFC", text[ws : m + margin]):
            return None
        limit = self._frontier_limit(text, ws, m, merges)
        if limit is None:
            return None
        highest = min(limit, m - margin)
        for i in range(last - 1, first - 1, -1):
            b = offsets[i][1]
            if b > highest:
                continue
            if b < ws + margin or b <= start:
                return None
            if offsets[i + 1][0] == b and (
                not self._nfc or nfc_stable_start(text[b]) or nfc_stable_marks(text, start, b)
            ):
                return b, i + 1  # T's tokens before b are the whole text's
        return None

    @staticmethod
    def _uncuttable_run(text: str, e: int, merges: Merges) -> bool:
        """e lies deep in a run whose rules split at every boundary, with merges that are
        not monotone (fact 3): no cut near it, known before encoding anything."""
        reach = merges.longest + 2
        c = text[e]
        run = text[max(e - reach, 0) : e + reach] == c * (2 * reach)
        return run and merges.run_moves(c) is None

    def _window_end(self, text: str, start: int, end: int) -> int | None:
        """A position near `end` between two characters of one class run."""
        for e in range(min(end, len(text) - 1), max(end - _END_TRIES, start + 1), -1):
            if self._added.spanned(text, e):
                continue
            before, after = char_class(text[e - 1]), char_class(text[e])
            if before is None or before != after or before not in self._classes:
                continue
            if self._nfc and not (
                (nfc_stable_start(text[e - 1]) and nfc_stable_start(text[e]))
                or nfc_stable_marks(text, start, e)
            ):
                continue  # NFC changes neither, so the classes seen here are the regex's
            return e
        return None

    def _prefix_end(self, text: str, start: int, e: int) -> int:
        """The end of T's pre-token that is a prefix of the whole text's (same start)."""
        if not self._newline_words or text[e] not in WHITE_SPACE:
            return e
        run_end = _NOT_WHITE.search(text, e)
        stop = run_end.start() if run_end is not None else len(text)
        if not any(text.find(nl, e, stop) != -1 for nl in _LINE_BREAKS):
            return e
        # the whole text's match runs on to a later newline; T's ends at its last one
        last_newline = max(text.rfind(nl, start, e) for nl in _LINE_BREAKS)
        if last_newline == -1 or any(c not in WHITE_SPACE for c in text[last_newline:e]):
            return e
        return last_newline + 1

    def _frontier_limit(self, text: str, ws: int, m: int, merges: Merges) -> int | None:
        """A position (in text) left of which T's tokens of the pre-token are the whole
        text's (fact 2, or fact 3 in a run of one character)."""
        c = text[m - 1]
        reach = merges.longest + 2
        if m - reach > ws and text[m - reach : m + reach] == c * (2 * reach):
            moves = merges.run_moves(c)
            if moves is None:
                # a rule splits at every boundary of the run: a chain crosses all of it
                return None
            back = -(-moves // len(c.encode("utf-8"))) + reach
            if m - back > ws and text[m - back : m] == c * back:
                return m - back
        region = text[ws : min(len(text), m + merges.longest)]
        encoded = byte_level(region)
        # a character boundary of the region -> its position in `encoded`
        head = len(byte_level(text[ws:m]))
        reached = self._chain(encoded, head, merges)
        if reached is None:
            return None
        # back from ByteLevel characters to text: the first character boundary at or left
        at, pos = ws, 0
        while at < m:
            width = len(text[at].encode("utf-8"))
            if pos + width > reached:
                break
            pos += width
            at += 1
        return at

    @staticmethod
    def _chain(word: str, head: int, merges: Merges) -> int | None:
        """The leftmost frontier a chain of rules reaches from `head` in `word` (fact 2);
        None when the budget runs out."""
        best: dict[int, int] = {head: -1}  # frontier -> the lowest rank it was reached with
        todo = [-head]
        work = 0
        while todo:
            f = -heapq.heappop(todo)
            arrived = best.pop(f)
            if f == 0:
                return 0
            steps, cost = _steps(word, f, merges)
            work += cost
            if work > CHAIN_BUDGET:
                return None
            for to, rank in steps:
                if merges.monotone and rank <= arrived:
                    continue  # fact 2: with monotone merges, ranks rise along a chain
                if to not in best:
                    heapq.heappush(todo, -to)
                    best[to] = rank
                else:
                    best[to] = min(best[to], rank)
            if not todo:
                return f
        return head


def _word_holding(
    offsets: list[tuple[int, int]], words: list[int | None], m: int
) -> tuple[int, int] | None:
    """The first and last token of the pre-token that ends at m, or None."""
    before = [i for i, (a, _) in enumerate(offsets) if a < m]
    if not before:
        return None
    last = before[-1]
    word = words[last]
    if word is None or offsets[last][1] != m:
        return None
    first = last
    while first > 0 and words[first - 1] == word:
        first -= 1
    return first, last


def _steps(word: str, f: int, merges: Merges) -> tuple[list[tuple[int, int]], int]:
    """Each rule (x, y) with x ending and y beginning at f in `word` as (x's start, its
    rank), and the lookups that took."""
    longest, token_id = merges.longest, merges.token_id
    rights = [word[f : f + k] for k in range(1, min(longest, len(word) - f) + 1)]
    rights = [y for y in rights if token_id(y) is not None]
    found: list[tuple[int, int]] = []
    work = 2 * longest
    if not rights:
        return found, work
    for k in range(1, min(longest, f) + 1):
        x = word[f - k : f]
        if token_id(x) is None:
            continue
        work += len(rights)
        for y in rights:
            rank = merges.rule(x, y)
            if rank is not None:
                found.append((f - k, rank))
    return found, work
