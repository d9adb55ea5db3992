"""ChatTokenizer.lower_bound is never above the real count, and catches huge prompts."""

from __future__ import annotations

import random
import sys
import unicodedata
from pathlib import Path

import pytest
from gateway.chat import prompt as chat_prompt
from gateway.chat.protocol import ChatCompletionRequest
from gateway.tokens import ChatTokenizer
from gateway.tokens.bounds import NFC_COMPOSABLE_ASCII
from gateway.tokens.errors import TemplateRefused

from tests.conftest import TOKENIZERS
from tests.gateway.tokens.reference_cases import conversation_cases, text_cases
from tests.gateway.tokens.test_chunking import ADVERSARIAL, ATOMS
from tests.support.tokenizers import CHAT_FAMILIES, FAMILIES


@pytest.fixture(scope="module", params=TOKENIZERS.params(FAMILIES))
def tokenizer(request: pytest.FixtureRequest, tokenizers_dir: Path) -> ChatTokenizer:
    return ChatTokenizer(tokenizers_dir / request.param)


def _texts() -> list[str]:
    rng = random.Random(7)
    fuzz = ["".join(rng.choices(ATOMS, k=rng.randint(1, 80))) for _ in range(300)]
    digits = ["1" * 5000, " 42 " * 900, "<|reserved_special_token_111|>" * 40 + "1" * 9]
    return [*ADVERSARIAL, *fuzz, *digits, *text_cases()]


def test_never_above_the_count_of_a_text(tokenizer: ChatTokenizer) -> None:
    above = [
        (text[:40], bound, count)
        for text in _texts()
        if (bound := tokenizer.lower_bound([text])) > (count := tokenizer.count_text(text))
    ]
    assert above == []


def test_a_sum_over_texts_is_a_bound_of_their_sum(tokenizer: ChatTokenizer) -> None:
    texts = _texts()
    assert tokenizer.lower_bound(texts) <= sum(tokenizer.count_text(t) for t in texts)


@pytest.mark.parametrize("family", TOKENIZERS.params(CHAT_FAMILIES))
def test_never_above_the_count_of_a_conversation(tokenizers_dir: Path, family: str) -> None:
    """Over the system, user and tool contents, as docs/TOKENS.md says to call it."""
    tokenizer = ChatTokenizer(tokenizers_dir / family)
    extra = [{"role": "user", "content": t} for t in (" 1 " * 999, "  \n" + "7" * 500 + "\t")]
    cases = [*conversation_cases(), {"id": "digits", "messages": extra}]
    above = []
    for case in cases:
        body = {"model": "m", "messages": case["messages"], "tools": case.get("tools")}
        request = ChatCompletionRequest.model_validate(body)
        messages = chat_prompt.template_messages(request)
        texts = [
            m["content"]
            for m in messages
            if m["role"] in ("system", "user", "tool") and isinstance(m.get("content"), str)
        ]
        try:
            count = tokenizer.count_chat(messages, chat_prompt.template_tools(request))
        except TemplateRefused:
            continue
        if tokenizer.lower_bound(texts) > count:
            above.append(case["id"])
    assert above == []


def test_a_huge_digit_prompt_is_over_any_context_before_counting(
    tokenizer: ChatTokenizer,
) -> None:
    """The 3.8 MB prompt of issue 27: refused on the bound alone (Qwen3's context is
    40,960 tokens, Llama 3's 8,192, Mistral's 32,768, GPT-2's 1,024)."""
    bound = tokenizer.lower_bound(["1" * 3_900_000])
    assert bound > 131_072


def test_nfc_composable_ascii_is_what_unicodedata_says() -> None:
    """An ASCII character that begins a canonical decomposition can vanish into a composed
    character under NFC (Qwen's normalizer), so a bound must not weigh it there."""
    starts = set()
    for cp in range(sys.maxunicode + 1):
        decomposition = unicodedata.decomposition(chr(cp))
        if decomposition and not decomposition.startswith("<"):
            first = chr(int(decomposition.split()[0], 16))
            if first.isascii():
                starts.add(first)
    assert starts <= NFC_COMPOSABLE_ASCII
