"""A text counted in pieces has exactly the whole text's count, for every family.

The pieces are made tiny here (1 to 7 characters) so that a cut is tried at nearly every
position of each text: a cut that changed a count anywhere would show. The gateway's own
sizes (gateway.tokens.chunking.CHUNK_CHARS) are checked on long texts at the end.
"""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest
from gateway.chat import prompt as chat_prompt
from gateway.chat.protocol import ChatCompletionRequest
from gateway.tokens import ChatTokenizer, cuts
from gateway.tokens.chunking import CHUNK_CHARS, Splitter, count_in_pieces
from gateway.tokens.cuts import splitter_for
from gateway.tokens.errors import TemplateRefused

from tests.conftest import TOKENIZERS
from tests.gateway.tokens.reference_cases import conversation_cases, text_cases
from tests.support.tokenizers import CHAT_FAMILIES, FAMILIES

SIZES = (1, 2, 3, 7)
ADVERSARIAL = [
    "1" * 500,
    "1234567890" * 40,
    "x" + "7" * 301 + "y" + "8" * 3 + " 99",  # Llama 3's groups of three
    "²" + "1" * 50 + "٣" + "1" * 20,  # numbers that are not ASCII digits
    " " * 300,
    "a" + " " * 200 + "b" + "\t " * 50 + "c",
    "\n" * 300,
    "\r\n" * 100 + "x\n\n \n",
    "a" * 700,
    "ab" * 300,
    "中" * 300 + " " + "日本語 " * 50,
    "🚀" * 200 + "a🚀 🚀1",
    "!!!" * 100 + "?! ..." * 20,
    "<s></s><unk>" * 30 + "</s>1<s> 2",
    "<|im_start|>user\n" + "1" * 100 + "<|im_end|>\n<|im_start|>assistant\n",
    "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n"
    + "2" * 99
    + "<|eot_id|>"
    + "<|reserved_special_token_11|>111<|reserved_special_token_111|>",
    "<|endoftext|>" * 20 + "1<|endoftext|>a <|endoftext|> ",
    "[INST] " + "5" * 80 + " [/INST] ok </s>[INST] 6 [/INST]",
    "▁" * 100 + "a▁b ▁ ▁1▁▁2",
    "e\u0301" * 100 + "1\u0301 2\u0308",  # NFC joins these (Qwen)
    "a!b'sc'S" * 40 + "é\u0301x\u0300\u0301y\u0308!" * 20 + "²!½'ll_x" * 10,
    "don't I'll we've 's 'S" * 20,
    "\u3000\u00a0\u2028 1\u00a0 2" * 30,
    "<0x0A>" * 50 + "<0x0" + "A>",
]
ATOMS = [
    "1", "12", "123", "a", "ab", " ", "  ", "\n", "\n\n", "\t", "\r\n", "中", "日本", "🚀",
    "<s>", "</s>", "<unk>", "<|im_end|>", "<|endoftext|>", "<|eot_id|>",
    "<|reserved_special_token_11|>", "'s", "'ll", "▁", "▁▁", "é", "e\u0301", "²", "½", "٣",
    "!", "?!", "...", "Hello", " world", "[INST]", "<0x0A>", "\u3000", "\u00a0", "-", "_",
    "<", ">", "|", "<|", "|>",
]  # fmt: skip


def _tokenizer(tokenizers_dir: Path, family: str) -> ChatTokenizer:
    return ChatTokenizer(tokenizers_dir / family)


def _whole(tokenizer: ChatTokenizer, text: str) -> int:
    backend = tokenizer._tokenizer
    return len(backend.encode_batch_fast([text], add_special_tokens=False)[0])


def _splitter(tokenizer: ChatTokenizer) -> Splitter:
    splitter = splitter_for(tokenizer._tokenizer)
    assert splitter is not None, "every family here has safe cuts"
    return splitter


def _wrong(tokenizer: ChatTokenizer, texts: list[str]) -> list[str]:
    splitter = _splitter(tokenizer)
    wrong = []
    for text in texts:
        whole = _whole(tokenizer, text)
        for size in SIZES:
            got = count_in_pieces(
                tokenizer._tokenizer, splitter, text, chunk_chars=size, batch_chars=16
            )
            if got != whole:
                wrong.append(f"{text[:40]!r}... in pieces of {size}: {got}, whole {whole}")
                break
    return wrong


@pytest.mark.parametrize("family", TOKENIZERS.params(FAMILIES))
def test_adversarial_texts_count_the_same_in_pieces(tokenizers_dir: Path, family: str) -> None:
    assert _wrong(_tokenizer(tokenizers_dir, family), ADVERSARIAL) == []


@pytest.mark.parametrize("family", TOKENIZERS.params(FAMILIES))
def test_random_texts_count_the_same_in_pieces(tokenizers_dir: Path, family: str) -> None:
    rng = random.Random(family)
    texts = ["".join(rng.choices(ATOMS, k=rng.randint(1, 60))) for _ in range(400)]
    assert _wrong(_tokenizer(tokenizers_dir, family), texts) == []


@pytest.mark.parametrize("family", TOKENIZERS.params(CHAT_FAMILIES))
def test_reference_prompts_count_the_same_in_pieces(tokenizers_dir: Path, family: str) -> None:
    """Every rendered conversation and plain text of the reference suite."""
    tokenizer = _tokenizer(tokenizers_dir, family)
    texts = list(text_cases())
    for case in conversation_cases():
        body = {"model": "m", "messages": case["messages"], "tools": case.get("tools")}
        request = ChatCompletionRequest.model_validate(body)
        try:
            texts.append(
                tokenizer.render_chat(
                    chat_prompt.template_messages(request), chat_prompt.template_tools(request)
                )
            )
        except TemplateRefused:
            continue
    assert _wrong(tokenizer, texts) == []


# family -> (text, piece size, the pieces and their extra counts)
CUT_EXAMPLES = {
    "qwen3": ("11 a<|im_end|>b", 1, [("1", 0), ("1", 0), (" a", 0), ("<|im_end|>b", 0)]),
    # groups of three from the run's first digit: x|111|111|1
    "llama-3-8b-instruct": ("x1111111", 2, [("x111", 0), ("111", 0), ("1", 0)]),
    # a piece that starts inside a word gets a "▁" before it, taken off its count
    "mistral-7b-instruct-v0.1": (
        "ab11 c</s>1", 1, [("ab", 0), (" 1", 1), (" 1", 1), (" c", 0), ("</s>1", 0)],
    ),
}  # fmt: skip


@pytest.mark.parametrize("family", TOKENIZERS.params(CUT_EXAMPLES))
def test_cuts_are_made(tokenizers_dir: Path, family: str) -> None:
    """The tests above prove something only if cuts happen, in the places meant."""
    text, size, want = CUT_EXAMPLES[family]
    pieces = _splitter(_tokenizer(tokenizers_dir, family)).pieces(text, size=size)
    assert [(p.text, p.extra) for p in pieces] == want


@pytest.mark.parametrize("family", TOKENIZERS.params(FAMILIES))
def test_a_piece_boundary_that_is_not_safe_would_show(tokenizers_dir: Path, family: str) -> None:
    """A splitter cutting anywhere gets counts wrong on these texts: they can tell."""
    tokenizer = _tokenizer(tokenizers_dir, family)
    anywhere = Splitter(cuts=r".", added=_splitter(tokenizer)._added)
    anywhere._safe = lambda text, cut: 0 < cut < len(text)  # type: ignore[method-assign]
    wrong = [
        t
        for t in ADVERSARIAL
        if count_in_pieces(tokenizer._tokenizer, anywhere, t, chunk_chars=3) != _whole(tokenizer, t)
    ]
    assert len(wrong) > len(ADVERSARIAL) // 2


@pytest.mark.parametrize("family", TOKENIZERS.params(FAMILIES))
def test_long_texts_are_counted_in_pieces_exactly(tokenizers_dir: Path, family: str) -> None:
    """At the gateway's own sizes, through count_text and count_text_with_special."""
    tokenizer = _tokenizer(tokenizers_dir, family)
    words = " ".join(f"w{i % 997}x{i % 31}" for i in range(30_000))
    assert len(list(_splitter(tokenizer).pieces(words, size=CHUNK_CHARS))) > 2
    for text in ("1" * (3 * CHUNK_CHARS + 5), words, "🚀 a1\n" * CHUNK_CHARS):
        assert len(text) > CHUNK_CHARS
        backend = tokenizer._tokenizer
        assert tokenizer.count_text(text) == _whole(tokenizer, text)
        with_special = len(backend.encode_batch_fast([text], add_special_tokens=True)[0])
        assert tokenizer.count_text_with_special(text) == with_special


def test_unknown_pipelines_are_counted_whole(tokenizers_dir: Path) -> None:
    from tokenizers import Tokenizer, normalizers, pre_tokenizers

    TOKENIZERS.require("gpt2")
    backend = Tokenizer.from_file(str(tokenizers_dir / "gpt2" / "tokenizer.json"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    assert splitter_for(backend) is None
    backend = Tokenizer.from_file(str(tokenizers_dir / "gpt2" / "tokenizer.json"))
    backend.normalizer = normalizers.Lowercase()
    assert splitter_for(backend) is None
    backend = Tokenizer.from_file(str(tokenizers_dir / "gpt2" / "tokenizer.json"))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    assert splitter_for(backend) is None


def test_the_cut_patterns_only_name_characters_the_proofs_cover() -> None:
    """The ByteLevel cuts' right-hand characters are ASCII (NFC never composes them with
    what precedes): a space, a digit, or printable ASCII after a digit."""
    lookaheads = re.findall(r"\(\?=\[([^\]]*)\]\)", cuts._BYTE_LEVEL_CUTS + cuts._LETTER_CUTS)
    assert lookaheads == ["0-9", "!-/:-~", "!-/:-@\\[-`{-~"]
    # combining marks only for families without NFC (gpt2, Llama 3's file as it is)
    assert re.findall(r"\(\?=\[([^\]]*)\]\)", cuts._MARK_CUTS) == ["\\u0300-\\u036f"]
    assert "(?= )" in cuts._BYTE_LEVEL_CUTS


def test_the_known_qwen2_regex_is_the_one_the_loader_installs() -> None:
    from gateway.tokens.loading import QWEN2_PRETOKENIZE_REGEX

    assert cuts.QWEN2_REGEX == QWEN2_PRETOKENIZE_REGEX
