"""The guard's prompt and verdict: Llama Guard's output parsed into categories, the
conversation shaped for Llama Guard 3's template, and the guard prompt counted by the
gateway exactly as transformers (hence vLLM) counts it."""

from __future__ import annotations

from pathlib import Path

import pytest
from gateway.guard.prompt import Verdict, VerdictError, conversation, parse_verdict, prompt_tokens
from gateway.tokens import ChatTokenizer


@pytest.mark.parametrize("text", ["safe", "\n\nsafe", "  safe\n", "safe\n\n"])
def test_safe(text: str) -> None:
    assert parse_verdict(text) == Verdict(safe=True)


@pytest.mark.parametrize(
    ("text", "categories"),
    [
        ("\n\nunsafe\nS1", ("S1",)),
        ("unsafe\nS1,S10", ("S1", "S10")),
        ("unsafe\n s10 , S1 \n", ("S10", "S1")),
        ("unsafe\nS2,S2", ("S2",)),
    ],
)
def test_unsafe_with_categories(text: str, categories: tuple[str, ...]) -> None:
    assert parse_verdict(text) == Verdict(safe=False, categories=categories)


@pytest.mark.parametrize(
    "text",
    [None, "", "unsafe", "unsafe\nhate", "maybe", "safe\nS1", "unsafe\nS1\nS2", "Safe!",
     "unsafe\nS1;S2", "x" * 5000],
)  # fmt: skip
def test_anything_else_is_a_guard_fault(text: str | None) -> None:
    with pytest.raises(VerdictError):
        parse_verdict(text)


def test_conversation_alternates_user_and_assistant() -> None:
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "", "tool_calls": [
            {"id": "c1", "type": "function",
             "function": {"name": "lookup", "arguments": {"q": "x"}}}]},
        {"role": "tool", "content": "42", "tool_call_id": "c1"},
        {"role": "user", "content": "And?"},
    ]  # fmt: skip
    assert conversation(messages) == [
        {"role": "user", "content": "Be brief.\n\nHi"},
        {"role": "assistant", "content": "lookup({'q': 'x'})"},
        {"role": "user", "content": "42\n\nAnd?"},
    ]
    with_output = conversation(messages, "The answer")
    assert with_output[-1] == {"role": "assistant", "content": "The answer"}
    assert len(with_output) == 4  # even: Llama Guard assesses the agent's last message


def test_a_conversation_opening_with_the_assistant_opens_with_the_user() -> None:
    turns = conversation(
        [{"role": "assistant", "content": "Hello"}, {"role": "user", "content": "x"}]
    )
    assert turns == [{"role": "user", "content": "Hello\n\nx"}]


@pytest.fixture(scope="module")
def guard_folder(guard_tokenizers: Path) -> Path:
    return guard_tokenizers / "llama-guard-3"


def test_the_guard_prompt_is_counted_as_transformers_counts_it(guard_folder: Path) -> None:
    from transformers import AutoTokenizer

    reference = AutoTokenizer.from_pretrained(str(guard_folder))
    ours = ChatTokenizer(guard_folder)
    for turns in (
        conversation([{"role": "user", "content": "How do I bake bread?"}]),
        conversation([{"role": "user", "content": "Hi"}], "Hello — café 鰯 there."),
        conversation([{"role": "system", "content": "s"}, {"role": "user", "content": " u "}]),
    ):
        ids = reference.apply_chat_template(turns, tokenize=True, return_dict=False)
        assert prompt_tokens(ours, turns) == len(ids)
        rendered = ours.render_chat(turns)
        assert rendered == reference.apply_chat_template(turns, tokenize=False)
        role = "Agent" if len(turns) % 2 == 0 else "User"
        assert f"ONLY THE LAST {role} message" in rendered
        assert rendered.endswith("<|start_header_id|>assistant<|end_header_id|>")
