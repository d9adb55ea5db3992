"""The guard's prompt and its verdict, in Llama Guard's format.

Llama Guard 3's chat template (the `chat_template` of meta-llama/Llama-Guard-3-8B's
tokenizer_config.json) takes a conversation that alternates user / assistant, starting with
the user, and asks for an assessment of ONLY ITS LAST message: the user's (the prompt) when
the conversation has an odd number of messages, the agent's (a completion) when it has an
even number. It raises on any other role or order. The model answers

    safe
or
    unsafe
    S1,S10

(Meta's model card; llama-stack's llama_guard provider reads it with
`^unsafe\\n(.*)$` and splits the codes on commas). A served guard (vLLM) renders the
template itself from the chat messages; the gateway renders the same template with the
guard's tokenizer (gateway.tokens) only to count the guard's prompt when the guard reports
no usage.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gateway.tokens import ChatTokenizer

# Llama Guard's hazard codes: S1..S14 in Llama Guard 3; custom taxonomies keep the shape.
CATEGORY = re.compile(r"^S[0-9]{1,3}$")
_MAX_VERDICT_CHARS = 2048


class VerdictError(ValueError):
    """The guard answered something that is not a Llama Guard verdict."""


@dataclass(frozen=True)
class Verdict:
    safe: bool
    categories: tuple[str, ...] = ()


def parse_verdict(text: str | None) -> Verdict:
    """`safe`, or `unsafe` and a line of comma-separated categories; anything else raises
    VerdictError (a guard fault: the policy's fail-open / fail-closed decides)."""
    if not isinstance(text, str) or len(text) > _MAX_VERDICT_CHARS:
        raise VerdictError("the guard answered no verdict")
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if lines == ["safe"]:
        return Verdict(safe=True)
    if len(lines) != 2 or lines[0] != "unsafe":
        raise VerdictError(f"not a Llama Guard verdict: {text[:80]!r}")
    codes = [code.strip().upper() for code in lines[1].split(",")]
    if not codes or not all(CATEGORY.match(code) for code in codes):
        raise VerdictError(f"not a Llama Guard category list: {lines[1][:80]!r}")
    return Verdict(safe=False, categories=tuple(dict.fromkeys(codes)))


def _side(role: str) -> str:
    # Everything the client sent (system, developer, user, tool results) is the user's
    # side of the conversation; the model's turns are the agent's.
    return "assistant" if role == "assistant" else "user"


def message_text(message: Mapping[str, Any]) -> str:
    """A message's text as the guard reads it: its content and, for an assistant turn
    that called tools, each call as `name(arguments)`."""
    text = str(message.get("content") or "")
    calls = message.get("tool_calls")
    if isinstance(calls, list):
        parts = [text] if text else []
        for call in calls:
            function = call.get("function") if isinstance(call, Mapping) else None
            if isinstance(function, Mapping):
                parts.append(f"{function.get('name', '')}({function.get('arguments', '')})")
        text = "\n".join(parts)
    return text


def conversation(
    messages: Sequence[Mapping[str, Any]], completion: str | None = None
) -> list[dict[str, str]]:
    """The messages (as the chat template sees them) and, for output screening, the
    completion so far, as the alternating user / assistant turns Llama Guard's template
    accepts: consecutive turns of one side are joined with a blank line, and a
    conversation that opens with the assistant opens with the user instead (as llama-stack's
    Llama Guard shield does)."""
    turns: list[dict[str, str]] = []
    items = [(_side(str(m.get("role"))), message_text(m)) for m in messages]
    if completion is not None:
        items.append(("assistant", completion))
    for position, (side, text) in enumerate(items):
        if position == 0:
            side = "user"
        if turns and turns[-1]["role"] == side:
            turns[-1]["content"] = f"{turns[-1]['content']}\n\n{text}"
        else:
            turns.append({"role": side, "content": text})
    return turns


def prompt_tokens(tokenizer: ChatTokenizer, turns: Sequence[dict[str, str]]) -> int:
    """The guard's prompt tokens as vLLM counts them: its own chat template, rendered."""
    return tokenizer.count_chat(turns)
