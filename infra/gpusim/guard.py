"""A guard model: a safety classifier answering in Llama Guard 3's output format.

Served like any model (its folder's chat template is Llama Guard 3's, so the prompt is
counted as vLLM counts it); instead of the paragraph it "generates" a verdict on the LAST
message of the conversation, as Llama Guard assesses only that one: ``\\n\\nsafe``, or
``\\n\\nunsafe\\nS1,S10`` naming the categories of the configured trigger words found in it
(whole words, case-insensitive), in the triggers' order. Llama Guard 3's template ends
right after the assistant header, so the model's first token is ``\\n\\n`` (Cloudflare's
and others' published outputs); the EOS token (<|eot_id|>) ends it and counts in usage.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from gpusim.generate import ChoiceResult, Limits, run_choice
from gpusim.models import SimModel


def _text(message: Any) -> str:
    if not isinstance(message, Mapping):
        return ""
    content = message.get("content")
    if isinstance(content, list):
        return "\n".join(
            str(p.get("text", "")) for p in content if isinstance(p, Mapping) and "text" in p
        )
    return content if isinstance(content, str) else ""


def verdict(messages: Sequence[Any], triggers: Sequence[tuple[str, str]]) -> str:
    """Llama Guard's answer on the conversation's last message."""
    text = _text(messages[-1]) if messages else ""
    found: list[str] = []
    for word, category in triggers:
        if category not in found and re.search(rf"\b{re.escape(word)}\b", text, re.IGNORECASE):
            found.append(category)
    return "\n\nunsafe\n" + ",".join(found) if found else "\n\nsafe"


def guard_result(
    model: SimModel,
    messages: Sequence[Any],
    triggers: Sequence[tuple[str, str]],
    max_tokens: int | None,
) -> ChoiceResult:
    """The verdict as a generation: its tokens with the model's tokenizer, then EOS."""
    script = model.build_script(verdict(messages, triggers))
    limits = Limits(natural_tokens=len(script.ids) + 1, max_tokens=max_tokens)
    return run_choice(lambda _: script, limits)


def parse_triggers(spec: str) -> tuple[tuple[str, str], ...]:
    """`word=S1,other word=S10` (the command line's --guard-triggers)."""
    pairs = []
    for item in spec.split(","):
        if item.strip():
            word, _, category = item.partition("=")
            if not word.strip() or not category.strip():
                raise ValueError(f"guard trigger {item!r}: expected word=CATEGORY")
            pairs.append((word.strip(), category.strip()))
    return tuple(pairs)
