"""The tokenizer's added tokens as the cut finders see them (gateway.tokens.chunking and
gateway.tokens.deepcuts): where one could make a cut unsafe, or make one."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tokenizers import Tokenizer


@dataclass(frozen=True)
class AddedTokens:
    """Where an added token could make a cut unsafe, or make one."""

    contents: tuple[str, ...]
    # each pair of adjacent characters inside an added token -> (token, offset of the pair's
    # second character): an occurrence spanning a cut holds the cut's pair at that offset
    spans: dict[str, tuple[tuple[str, int], ...]]
    # tokens whose lstrip/rstrip/single_word make their neighbourhood part of the match
    flagged: tuple[str, ...]
    # first character -> the tokens always split out of a text (not `split_special_tokens`)
    # without flags: a cut just before one that is matched is a segment boundary
    splitting: dict[str, tuple[str, ...]]

    @classmethod
    def of(cls, tokenizer: Tokenizer) -> AddedTokens:
        spans: dict[str, list[tuple[str, int]]] = {}
        splitting: dict[str, list[str]] = {}
        contents: list[str] = []
        flagged: list[str] = []
        for token in tokenizer.get_added_tokens_decoder().values():
            content = token.content
            if not content:
                continue
            contents.append(content)
            if token.lstrip or token.rstrip or token.single_word:
                flagged.append(content)
            elif not (token.special and tokenizer.encode_special_tokens):
                splitting.setdefault(content[0], []).append(content)
            for i in range(1, len(content)):
                spans.setdefault(content[i - 1 : i + 1], []).append((content, i))
        return cls(
            contents=tuple(contents),
            spans={pair: tuple(found) for pair, found in spans.items()},
            flagged=tuple(flagged),
            splitting={c: tuple(found) for c, found in splitting.items()},
        )

    def spanned(self, text: str, cut: int) -> bool:
        """An added token occurs across `cut`."""
        found = self.spans.get(text[cut - 1 : cut + 1], ())
        return any(text.startswith(token, cut - i) for token, i in found)

    def touches(self, text: str, cut: int, tokens: tuple[str, ...]) -> bool:
        """One of `tokens` ends or begins at `cut`."""
        return any(text.endswith(t, 0, cut) or text.startswith(t, cut) for t in tokens)

    def matched_at(self, text: str, cut: int) -> bool:
        """A splitting token occurs at `cut` and no other occurrence of any added token
        overlaps it, so the tokenizer's matcher takes it whatever it chose before."""
        found = [t for t in self.splitting.get(text[cut], ()) if text.startswith(t, cut)]
        if len(found) != 1:
            return False
        end = cut + len(found[0])
        for other in self.contents:
            at = text.find(other, max(cut - len(other) + 1, 0), end + len(other) - 1)
            while at != -1 and at < end:
                if at != cut or other != found[0]:
                    return False
                at = text.find(other, at + 1, end + len(other) - 1)
        return True
