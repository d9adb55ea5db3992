"""ChatTokenizer.lower_bound is never above the real count, and catches huge prompts."""

from __future__ import annotations

import random
import sys
import unicodedata
from pathlib import Path

import pytest
from devstack.tokenizers import context_length
from gateway.chat import prompt as chat_prompt
from gateway.chat.protocol import ChatCompletionRequest
from gateway.tokens import ChatTokenizer
from gateway.tokens.bounds import NFC_COMPOSABLE_ASCII, WHITESPACE, LowerBound
from gateway.tokens.errors import TemplateRefused

from tests.conftest import TOKENIZERS
from tests.gateway.tokens.reference_cases import conversation_cases, text_cases
from tests.gateway.tokens.test_chunking import ADVERSARIAL, ATOMS
from tests.support.tokenizers import CHAT_FAMILIES, FAMILIES


@pytest.fixture(scope="module", params=TOKENIZERS.params(FAMILIES))
def family(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture(scope="module")
def tokenizer(family: str, tokenizers_dir: Path) -> ChatTokenizer:
    return ChatTokenizer(tokenizers_dir / family)


# Whitespace, at the ends and inside, runs and mixtures (Llama 2's "▁" and byte tokens).
SPACES = [
    " " * 5000,
    "\n" * 3000,
    "\t" * 2000,
    "\r" * 700,
    "\r\n" * 1000,
    " \t\n\r" * 500,
    "a" + " " * 1600 + "a",
    "  x  ",
    "\n\nx\t",
    "▁" + " " * 300 + "▁▁ ",
    " " * 300 + "<s>" + " " * 17 + "</s>  ",
    " <|eot_id|>\n\n" * 40,
]
# Text that looks like the start of an added token, and added tokens themselves.
ANGLES = [
    "<a" * 500,
    "<" * 700,
    "<s>" * 200 + "<unk" * 50 + "</s" * 30,
    "</s><s>a" * 100,
    "<|" * 300 + "<|eot_id|>" * 20 + "<|eot_id" * 30,
    "<|im_end|><|endoftext|>" * 40 + "<<|im_start|>|>",
]
_SPACE_ATOMS = [" ", "  ", "\t", "\n", "\r", "\r\n", " " * 17, "a", "1", "▁", "<s>", "</s>"]


def _texts() -> list[str]:
    rng = random.Random(7)
    fuzz = ["".join(rng.choices(ATOMS, k=rng.randint(1, 80))) for _ in range(300)]
    spaces = ["".join(rng.choices(_SPACE_ATOMS, k=rng.randint(1, 400))) for _ in range(100)]
    digits = ["1" * 5000, " 42 " * 900, "<|reserved_special_token_111|>" * 40 + "1" * 9]
    return [*ADVERSARIAL, *SPACES, *ANGLES, *fuzz, *spaces, *digits, *text_cases()]


def test_never_above_the_count_of_a_text(tokenizer: ChatTokenizer) -> None:
    above = [
        (text[:40], bound, count)
        for text in _texts()
        if (bound := tokenizer.lower_bound([text])) > (count := tokenizer.count_text(text))
    ]
    assert above == []


def test_never_above_the_count_of_a_plain_text(tokenizer: ChatTokenizer) -> None:
    """Completions and embeddings: no template, so whitespace at the ends is weighed too."""
    above = [
        (text[:40], bound, count)
        for text in _texts()
        for bound in tokenizer.each_lower_bound([text], over_chars=0)
        if bound > (count := tokenizer.count_text(text))
    ]
    assert above == []


def test_never_above_the_count_of_the_raw_file(tokenizers_dir: Path, family: str) -> None:
    """tokenizer.json as it is (Llama 2's raw normalizer: Prepend("▁"), Replace(" ", "▁"))."""
    from tokenizers import Tokenizer

    raw = Tokenizer.from_file(str(tokenizers_dir / family / "tokenizer.json"))
    bound = LowerBound.of(raw)
    above = [
        (text[:40], least, count)
        for text in _texts()
        if (least := bound.tokens([text], trimmed=False))
        > (count := len(raw.encode(text, add_special_tokens=False)))
    ]
    assert above == []


def test_spaces_and_letters_weigh_under_a_one_to_one_normalizer(tokenizers_dir: Path) -> None:
    """The lead's finding: Llama 2's raw file (a normalizer that maps " " to "▁", one
    character each) bounded "a" + 1,600 spaces + "a" at 0. Through the map, a space is
    what "▁" is to the vocabulary (L = 16)."""
    from tokenizers import Tokenizer

    TOKENIZERS.require("mistral-7b-instruct-v0.1")
    folder = tokenizers_dir / "mistral-7b-instruct-v0.1"
    raw = LowerBound.of(Tokenizer.from_file(str(folder / "tokenizer.json")))
    assert raw.longest == 16
    assert raw.tokens(["a" + " " * 1600 + "a"], trimmed=False) >= 1500 // 16


def test_whitespace_at_the_ends_is_weighed_unless_the_template_trims(
    tokenizer: ChatTokenizer, family: str
) -> None:
    """Llama 3's template trims its contents and Qwen3's strips some; Mistral's and
    TinyLlama's copy them whole, so their ends reach the tokenizer."""
    text = " " * 3200 + "\n" * 100
    plain = tokenizer.each_lower_bound([text], over_chars=0)[0]
    assert plain >= 3200 // 128 and plain <= tokenizer.count_text(text)
    if not tokenizer.has_chat_template:
        return
    chat = tokenizer.lower_bound([text])
    if family in ("llama-3-8b-instruct", "qwen3"):
        assert chat == 0
    else:
        assert chat == plain
        assert chat <= tokenizer.count_chat([{"role": "user", "content": text}])


@pytest.mark.parametrize(
    "family", TOKENIZERS.params(("mistral-7b-instruct-v0.1", "tinyllama-1.1b-chat-v1.0"))
)
@pytest.mark.parametrize("text", [" " * 3_800_000, "<a" * 1_900_000], ids=["spaces", "angles"])
def test_request_sized_words_are_past_the_context(
    tokenizers_dir: Path, family: str, text: str
) -> None:
    """One BPE word for Llama 2's pre-tokenizer, counted whole: 3.8M spaces cost 380 MB,
    "<a" x 1.9M 500 MB. Their bound alone is past the context `make run` serves the model
    with. ("<" may begin `<s>`, `</s>` or `<unk>`: each is counted, not every "<" taken to
    begin one.)"""
    folder = tokenizers_dir / family
    tokenizer = ChatTokenizer(folder)
    limit = context_length(family, folder)
    assert tokenizer.lower_bound([text]) >= limit
    assert tokenizer.each_lower_bound([text], over_chars=0)[0] >= limit


def test_would_be_added_tokens_do_not_cancel_a_run(tokenizers_dir: Path) -> None:
    """Llama 3's 256 added tokens all begin with "<|": taking each "<|" to begin one (30
    characters) let 113K of them cancel the weight of 3.4M spaces, a run counted whole
    (about 300 MB). Grouped under longer prefixes, they cancel nothing here."""
    TOKENIZERS.require("llama-3-8b-instruct")
    folder = tokenizers_dir / "llama-3-8b-instruct"
    text = "<|" * 113_000 + " " * 3_400_000 + "x"
    assert ChatTokenizer(folder).lower_bound([text]) >= context_length("llama3", folder)


def test_a_pipeline_it_cannot_read_weighs_nothing(tokenizers_dir: Path) -> None:
    """A pre-tokenizer that drops whitespace, a normalizer that deletes digits: the bound
    does not guess what they keep."""
    from tokenizers import Tokenizer, normalizers, pre_tokenizers

    TOKENIZERS.require("gpt2")
    path = str(tokenizers_dir / "gpt2" / "tokenizer.json")
    splitting = Tokenizer.from_file(path)
    splitting.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    deleting = Tokenizer.from_file(path)
    deleting.normalizer = normalizers.Replace("1", "")
    for raw, text in ((splitting, " " * 5000 + "x"), (deleting, "1" * 5000 + "x")):
        assert LowerBound.of(raw).tokens([text], trimmed=False) == 0
        assert len(raw.encode(text, add_special_tokens=False)) == 1


def test_a_sum_over_texts_is_a_bound_of_their_sum(tokenizer: ChatTokenizer) -> None:
    texts = _texts()
    assert tokenizer.lower_bound(texts) <= sum(tokenizer.count_text(t) for t in texts)


@pytest.mark.parametrize("family", TOKENIZERS.params(CHAT_FAMILIES))
def test_never_above_the_count_of_a_conversation(tokenizers_dir: Path, family: str) -> None:
    """Over the system, user and tool contents, and the assistant's where the template cuts
    no content, as docs/TOKENS.md says to call it."""
    tokenizer = ChatTokenizer(tokenizers_dir / family)
    contents = (" 1 " * 999, "  \n" + "7" * 500 + "\t", " " * 1600, "\n" * 90 + "x" + "\t" * 80)
    extra = [{"role": "user", "content": t} for t in contents]
    replies = [
        {"role": role, "content": t}
        for t in contents
        for role in ("user", "assistant")  # alternating, as Mistral's template requires
    ]
    cases = [
        *conversation_cases(),
        {"id": "digits", "messages": extra},
        {"id": "replies", "messages": [*replies, {"role": "user", "content": "and?"}]},
    ]
    roles = {"system", "user", "tool"} | (
        {"assistant"} if tokenizer.copies_contents_whole else set()
    )
    above = []
    for case in cases:
        body = {"model": "m", "messages": case["messages"], "tools": case.get("tools")}
        request = ChatCompletionRequest.model_validate(body)
        messages = chat_prompt.template_messages(request)
        texts = [
            m["content"]
            for m in messages
            if m["role"] in roles and isinstance(m.get("content"), str)
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


def test_nfc_never_absorbs_an_ascii_character_that_follows() -> None:
    """NFC composes a starter with what follows it in its canonical decomposition: no
    decomposition has ASCII after its first character, so an ASCII character (whitespace
    included) that begins none survives NFC, and a bound may weigh it there."""
    followers = set()
    for cp in range(sys.maxunicode + 1):
        decomposition = unicodedata.decomposition(chr(cp))
        if decomposition and not decomposition.startswith("<"):
            followers.update(chr(int(part, 16)) for part in decomposition.split()[1:])
    assert not any(c.isascii() for c in followers)
    assert not set(WHITESPACE) & NFC_COMPOSABLE_ASCII
