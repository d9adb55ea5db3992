"""Cuts inside one long pre-token keep the count exact (gateway.tokens.deepcuts).

The hostile texts here are single pre-tokens (or BPE words) far longer than a piece: runs
of spaces, newlines, mixed whitespace, emoji, CJK, combining marks, digits, one long word,
random bytes read as Latin-1. Each is counted in pieces of a few thousand characters, so
that cuts inside its pre-tokens are made (and checked to be made where the proofs allow),
and must equal the whole text's count.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from gateway.tokens import ChatTokenizer
from gateway.tokens.chunking import Splitter, count_in_pieces
from gateway.tokens.cuts import splitter_for
from gateway.tokens.deepcuts import DeepCuts, Merges

from tests.gateway.tokens.test_chunking import FAMILIES

SIZE = 3_000
LENGTH = 7 * SIZE
_rng = random.Random(27)
HOSTILE = {
    "spaces": " " * LENGTH,
    "newlines": "\n" * LENGTH,
    "tabs": "\t" * LENGTH,
    "mixed whitespace": "".join(_rng.choices(" \t\n\r\u3000", k=LENGTH)),
    "spaces and tabs": "".join(_rng.choices(" \t", k=LENGTH)),
    "indentation": ("\n" + " " * 900) * (LENGTH // 901),
    "emoji": "🚀" * LENGTH,
    "mixed emoji": "".join(_rng.choices("🚀🎉👍🏽😀🇫🇷✨", k=LENGTH)),
    "cjk": "中" * LENGTH,
    "cjk text": "".join(
        _rng.choices("的一是不了人我在有他这中大来上国个到说们为子和你地出道也时年", k=LENGTH)
    ),
    "combining marks": "\u0301" * LENGTH,
    "marks after a letter": "a" + "\u0301" * LENGTH + "\u0316" + "b\u0301" * 9,
    "letters with marks": "e\u0301" * (LENGTH // 2),
    "digits": "1" * LENGTH,
    "one long word": "".join(_rng.choices("abcdefghijklmnopqrstuvwxyz", k=LENGTH)),
    "letters": "a" * LENGTH,
    "dashes": "-" * LENGTH,
    "latin-1 bytes": "".join(map(chr, _rng.randbytes(LENGTH))),
    "latin-1 letters": "".join(_rng.choices("àáâãäåæçèéêëìíîïðñòóôõöøùúûüýþÿ", k=LENGTH)),
    "runs in context": "x " + " " * LENGTH + "y" + "中" * LENGTH + "!\n" + "a" * LENGTH + "🚀" * 9,
    "added tokens inside runs": ("中" * 2993 + "<|im_end|>" + " " * 2990 + "<|endoftext|>") * 4,
    "runs between special tokens": "<|im_end|>" + " " * LENGTH + "<|endoftext|>" + "中" * LENGTH,
}
# Where each family makes cuts inside these pre-tokens ("added tokens inside runs" is
# there for the count: its runs are cut before the added tokens). The others are counted whole: a run
# whose rules split at every boundary of a tokenizer whose merges are not monotone (Llama 3;
# docs/TOKENS.md), a word for Metaspace (no cuts inside a word there).
CUT_INSIDE = {
    # NFC joins "e" and U+0301 into one letter: no class run to cut in the raw text
    "qwen3": set(HOSTILE)
    - {"digits", "latin-1 bytes", "letters with marks", "marks after a letter"}
    - {"added tokens inside runs"},
    "gpt2": set(HOSTILE)
    - {"latin-1 bytes", "letters with marks", "added tokens inside runs"},  # cut at each mark
    "llama-3-8b-instruct": {
        "emoji",
        "mixed emoji",
        "cjk",
        "cjk text",
        "combining marks",
        "one long word",
        "latin-1 letters",
        "mixed whitespace",
    },
}


def _whole(tokenizer: ChatTokenizer, text: str) -> int:
    return len(tokenizer._tokenizer.encode_batch_fast([text], add_special_tokens=False)[0])


def _splitter(tokenizer: ChatTokenizer) -> Splitter:
    splitter = splitter_for(tokenizer._tokenizer)
    assert splitter is not None
    return splitter


@pytest.mark.parametrize("family", FAMILIES)
def test_hostile_texts_count_the_same_in_pieces(tokenizers_dir: Path, family: str) -> None:
    tokenizer = ChatTokenizer(tokenizers_dir / family)
    splitter = _splitter(tokenizer)
    wrong, cut = [], set()
    for name, text in HOSTILE.items():
        got = count_in_pieces(
            tokenizer._tokenizer, splitter, text, chunk_chars=SIZE, batch_chars=2 * SIZE
        )
        if got != _whole(tokenizer, text):
            wrong.append(f"{name}: {got} in pieces, {_whole(tokenizer, text)} whole")
        if any(p.tokens is not None for p in splitter.pieces(text, size=SIZE)):
            cut.add(name)
    assert wrong == []
    # the equality above proves something only where cuts inside pre-tokens were made
    assert cut >= CUT_INSIDE.get(family, set()), sorted(CUT_INSIDE.get(family, set()) - cut)


@pytest.mark.parametrize("family", ["qwen3", "gpt2", "llama-3-8b-instruct"])
def test_random_hostile_mixtures_count_the_same(tokenizers_dir: Path, family: str) -> None:
    """Long stretches of random runs glued together, cut at many sizes."""
    tokenizer = ChatTokenizer(tokenizers_dir / family)
    splitter = _splitter(tokenizer)
    rng = random.Random(family)
    units = [" ", "\n", "\t", "中", "🚀", "a", "!", "-", "1", "é", "\u0301", " \n", "ab"]
    for _ in range(6):
        text = "".join(rng.choice(units) * rng.randint(1, 3000) for _ in range(12))
        for size in (700, 1_500, 4_000):
            got = count_in_pieces(
                tokenizer._tokenizer, splitter, text, chunk_chars=size, batch_chars=size
            )
            assert got == _whole(tokenizer, text), (size, [text[i] for i in range(0, 40, 7)])


def test_merges_are_monotone_only_where_the_files_say(tokenizers_dir: Path) -> None:
    """Fact 2's rising ranks need monotone merges: true of Qwen2's and GPT-2's files, not of
    the files converted from tiktoken (Llama 3) or sentencepiece (Llama 2 style)."""
    monotone = {}
    for family in FAMILIES:
        backend = ChatTokenizer(tokenizers_dir / family)._tokenizer
        monotone[family] = Merges.of(backend).monotone
    assert monotone == {
        "qwen3": True,
        "llama-3-8b-instruct": False,
        "mistral-7b-instruct-v0.1": False,
        "tinyllama-1.1b-chat-v1.0": False,
        "gpt2": True,
    }


def test_how_far_a_frontier_moves_in_a_run(tokenizers_dir: Path) -> None:
    """Fact 3: 0 where no rule splits at a character boundary of the run (GPT-2 has no rule
    joining two spaces; no tokenizer here joins two 中), a finite sum with monotone merges,
    and unbounded (no cut) for Llama 3's spaces."""

    def merges(family: str) -> Merges:
        return Merges.of(ChatTokenizer(tokenizers_dir / family)._tokenizer)

    gpt2, qwen, llama3 = merges("gpt2"), merges("qwen3"), merges("llama-3-8b-instruct")
    assert gpt2.run_moves(" ") == 0
    assert qwen.run_moves("中") == 0 and llama3.run_moves("中") == 0
    assert 0 < (qwen.run_moves(" ") or 0) < 3_000
    assert llama3.run_moves(" ") is None


def test_a_window_boundary_near_its_end_is_not_always_the_whole_texts(
    tokenizers_dir: Path,
) -> None:
    """Why the frontier limit exists: the tokens of a prefix of a run of spaces differ from
    the whole run's near the prefix's end (Qwen3 joins spaces into tokens of up to 128)."""
    backend = ChatTokenizer(tokenizers_dir / "qwen3")._tokenizer

    def boundaries(n: int) -> set[int]:
        ends, at = set(), 0
        for token in backend.encode(" " * n, add_special_tokens=False).tokens:
            at += len(token)
            ends.add(at)
        return ends

    whole = boundaries(5_000)
    prefixes = {n: boundaries(n) for n in range(3_000, 3_200)}
    assert any(p - whole for p in prefixes.values())
    # left of the frontier limit, where cuts are taken, they agree
    moves = Merges.of(backend).run_moves(" ")
    assert moves is not None
    for n, ends in prefixes.items():
        limit = n - moves - 130
        assert {b for b in ends if b <= limit} <= whole


@pytest.mark.parametrize("family", ["qwen3", "llama-3-8b-instruct", "gpt2"])
def test_a_window_ends_inside_a_pre_token_of_the_same_start(
    tokenizers_dir: Path, family: str
) -> None:
    """The regex part of the argument, checked with the tokenizer's own pre-tokenizer: at
    every window end the splitter would choose, the window's pre-token ending at the prefix
    end starts where the whole text's pre-token holding that place starts, and every earlier
    pre-token of the window is one of the whole text's."""
    tokenizer = ChatTokenizer(tokenizers_dir / family)
    splitter = _splitter(tokenizer)
    deep = splitter._deep
    assert isinstance(deep, DeepCuts)
    pre = tokenizer._tokenizer.pre_tokenizer
    rng = random.Random(family)
    atoms = [
        " ",
        "  ",
        "\n",
        "\n\n",
        "\t",
        "\r\n",
        "a",
        "bc",
        "中",
        "🚀",
        "!",
        "'s",
        "1",
        "é",
        "\u3000",
    ]
    checked = 0
    for _ in range(300):
        text = "".join(rng.choice(atoms) * rng.randint(1, 6) for _ in range(rng.randint(2, 30)))
        whole = [(byte_start, span) for byte_start, span in _spans(pre, text)]
        for end in range(1, len(text)):
            e = deep._window_end(text, 0, end)
            if e is None or e != end:
                continue
            m = deep._prefix_end(text, 0, e)
            window = _spans(pre, text[:e])
            holding = [span for _, span in window if span[1] == m]
            if not holding:
                continue  # the splitter finds no pre-token ending at m, and makes no cut
            ((start, _),) = holding
            spans = [span for _, span in whole]
            assert any(a == start and b >= m for a, b in spans), (text, e, m)
            assert [s for _, s in window if s[1] <= start] == [s for s in spans if s[1] <= start]
            checked += 1
    assert checked > 300


def _spans(pre: object, text: str) -> list[tuple[int, tuple[int, int]]]:
    found = pre.pre_tokenize_str(text)  # type: ignore[attr-defined]
    return [(i, offsets) for i, (_, offsets) in enumerate(found)]
