"""What the upstream generated for one request, per choice, and the gateway's count of it.

The `Meter` (meter.py) feeds this from validated chunks and bodies; at close it asks for
the gateway's completion count where that count adds information.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import anyio.to_thread

logger = logging.getLogger(__name__)

# Text longer than this (characters, all texts of one call) is counted in a worker thread.
INLINE_COUNT_CHARS = 16_000
_TEXT_FIELDS = ("content", "reasoning_content")
# A stop_reason longer than this is not a stop string a client could have sent (untrusted).
_MAX_STOP_CHARS = 4096


class TextCounter(Protocol):
    """What counts generated text: a model's tokenizer (tokens/store.py, ChatTokenizer)."""

    def count_text(self, text: str) -> int: ...


async def count_all(count: Callable[[str], int], texts: list[str]) -> list[int]:
    """Each text's count; long batches off the event loop."""
    if sum(len(t) for t in texts) <= INLINE_COUNT_CHARS:
        return [count(t) for t in texts]
    return await anyio.to_thread.run_sync(lambda: [count(t) for t in texts])


@dataclass
class Generated:
    """Generated text per choice index (content, reasoning, tool-call names and
    arguments), finish reasons, and vLLM's stop reasons where it sent them."""

    texts: dict[int, list[str]] = field(default_factory=dict)
    finish: dict[int, str] = field(default_factory=dict)
    stop_reasons_seen: bool = False
    stop_tokens: int = 0

    def add(self, index: int, part: Mapping[str, Any]) -> bool:
        """A delta or message of choice `index`; whether it carried generated text."""
        seen = False
        for name in _TEXT_FIELDS:
            text = part.get(name)
            if text:
                self.texts.setdefault(index, []).append(text)
                seen = True
        for call in part.get("tool_calls") or ():
            function = call.get("function")
            if isinstance(function, dict):
                for name in ("name", "arguments"):
                    if isinstance(function.get(name), str) and function[name]:
                        self.texts.setdefault(index, []).append(function[name])
                        seen = True
        return seen

    def finished(self, index: int, choice: Mapping[str, Any]) -> None:
        """A choice's finish_reason, and vLLM's stop_reason on a "stop" finish: None or a
        token id is the EOS/stop token (one id, no text); a string is the stop string, and
        vLLM counts the ids through the one that completed it, so it is counted with the
        choice's text (docs/TOKENS.md)."""
        reason = choice.get("finish_reason")
        if not reason:
            return
        self.finish[index] = reason
        if reason != "stop" or "stop_reason" not in choice:
            return
        stop = choice["stop_reason"]
        if isinstance(stop, str) and len(stop) <= _MAX_STOP_CHARS:
            self.stop_reasons_seen = True
            self.texts.setdefault(index, []).append(stop)
        elif stop is None or (isinstance(stop, int) and not isinstance(stop, bool)):
            self.stop_reasons_seen = True
            self.stop_tokens += 1

    @property
    def anything(self) -> bool:
        return bool(self.texts or self.finish)

    @property
    def indexes(self) -> list[int]:
        return sorted(set(self.texts) | set(self.finish))

    @property
    def finish_reasons(self) -> list[str | None]:
        return [self.finish.get(i) for i in self.indexes]

    async def count(
        self, tokenizer: TextCounter, *, counts_eos: bool, max_tokens: int | None = None
    ) -> int:
        """The completion tokens by the gateway's tokenizer: the texts, plus the stop
        tokens vLLM reported, or else (`counts_eos`) one EOS per choice that stopped.

        A choice cut by the `max_tokens` the upstream was sent ("length") generated that
        many ids: vLLM finishes a sequence with "length" there (the gateway's max_tokens
        fits the context, which vLLM checks before generating). Its text cannot say so: a
        cut inside a character leaves that character's bytes unsent (vLLM's incremental
        detokenizer holds back an unfinished UTF-8 sequence and drops it at the end), so
        the text re-tokenizes to fewer ids than were generated (docs/TOKENS.md)."""
        capped = set()
        if max_tokens is not None:
            capped = {i for i, reason in self.finish.items() if reason == "length"}
        texts = ["".join(self.texts.get(i, [])) for i in self.indexes if i not in capped]
        total = sum(await count_all(tokenizer.count_text, [t for t in texts if t]))
        total += len(capped) * (max_tokens or 0)
        if self.stop_reasons_seen:
            return total + self.stop_tokens
        if counts_eos:
            total += sum(1 for reason in self.finish_reasons if reason == "stop")
        return total
