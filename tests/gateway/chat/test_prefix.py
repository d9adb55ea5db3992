"""A chat request's prefix key (chat/prefix.py) with the real Qwen3 tokenizer."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from gateway.backends.affinity import BLOCK_SIZE, MAX_KEY_BLOCKS, prefix_key
from gateway.chat.prefix import route_hint, stable_messages
from gateway.chat.protocol import ChatCompletionRequest
from gateway.inputs import validate
from gateway.settings import Settings
from gateway.tokens import ChatTokenizer, TokenizerStore

SYSTEM = {"role": "system", "content": "You are a helpful assistant for the support desk. " * 4}


def _tokenizer(tokenizers_dir: Path) -> ChatTokenizer:
    return TokenizerStore(Settings(tokenizers_dir=tokenizers_dir)).get("qwen3")


def _key(tokenizer: ChatTokenizer, messages: list[dict[str, Any]], salt: str | None = None) -> Any:
    request = validate(ChatCompletionRequest, {"model": "qwen3", "messages": messages})
    return asyncio.run(route_hint(tokenizer, request, salt=salt)).prefix


def test_every_turn_of_a_conversation_has_its_first_turns_key(tokenizers_dir: Path) -> None:
    tokenizer = _tokenizer(tokenizers_dir)
    talk = [SYSTEM, {"role": "user", "content": "My invoice 4411 is wrong. " * 3}]
    first = _key(tokenizer, talk)
    assert first is not None
    talk += [{"role": "assistant", "content": "Which line?"}, {"role": "user", "content": "2"}]
    assert _key(tokenizer, talk) == first


def test_conversations_sharing_a_system_prompt_have_different_keys(tokenizers_dir: Path) -> None:
    tokenizer = _tokenizer(tokenizers_dir)
    one = _key(tokenizer, [SYSTEM, {"role": "user", "content": "About invoice 1."}])
    two = _key(tokenizer, [SYSTEM, {"role": "user", "content": "About invoice 2."}])
    assert one != two
    assert _key(tokenizer, [SYSTEM, {"role": "user", "content": "About invoice 1."}], "x") != one


def test_the_key_is_the_leading_blocks_of_the_rendered_prompt(tokenizers_dir: Path) -> None:
    # The blocks the replica caches for the first turn: its whole prompt, as counted.
    tokenizer = _tokenizer(tokenizers_dir)
    talk = [SYSTEM, {"role": "user", "content": "Hello there. " * 10}]
    text = tokenizer.render_chat(talk)
    ids = tokenizer.leading_ids(text, tokens=10**6)
    assert len(ids) == tokenizer.count_text(text)
    assert _key(tokenizer, talk) == prefix_key(ids, tail=True)


def test_a_long_prefix_is_cut_at_the_key_s_blocks(tokenizers_dir: Path) -> None:
    tokenizer = _tokenizer(tokenizers_dir)
    ids = tokenizer.leading_ids("word " * 20_000, tokens=MAX_KEY_BLOCKS * BLOCK_SIZE)
    assert len(ids) == MAX_KEY_BLOCKS * BLOCK_SIZE


def test_a_short_prompt_has_no_key_and_the_stable_part_ends_at_the_first_user() -> None:
    talk = [SYSTEM, {"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]
    assert stable_messages(talk) == talk[:2]
    assert stable_messages([SYSTEM]) == [SYSTEM]
    assert prefix_key([1, 2, 3]) is None
