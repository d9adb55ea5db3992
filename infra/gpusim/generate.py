"""Deterministic generation of one choice, token by token, the way vLLM reports it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gpusim.models import Script


@dataclass(frozen=True)
class Limits:
    """When a choice ends: naturally (EOS), at the cap, or at a stop string."""

    natural_tokens: int  # the EOS token is the last of these (counted, never shown)
    max_tokens: int | None = None
    min_tokens: int = 0
    ignore_eos: bool = False
    stop: tuple[str, ...] = ()

    @property
    def eos_at(self) -> int | None:
        if self.ignore_eos:
            return None
        return max(self.natural_tokens, self.min_tokens + 1)

    @property
    def horizon(self) -> int:
        """The most tokens the choice can generate."""
        eos_at = self.eos_at
        if self.max_tokens is None:
            return eos_at if eos_at is not None else self.natural_tokens
        return self.max_tokens if eos_at is None else min(self.max_tokens, eos_at)


@dataclass(frozen=True)
class ChoiceResult:
    steps: tuple[str, ...]  # text streamed after each generated token ("" = nothing yet)
    content: str
    completion_tokens: int
    finish_reason: str
    stop_reason: str | None
    # The generated token ids, EOS_ID where the EOS token ends the choice.
    token_ids: tuple[int, ...] = ()
    # Set when a tool parser rewrote the output: the response message, and per step the
    # streamed delta (None: no chunk for that token).
    message: dict[str, Any] | None = None
    deltas: tuple[dict[str, Any] | None, ...] | None = None
    logprobs: list[dict[str, Any]] | None = field(default=None)


EOS_ID = -1


def _find_stop(text: str, new_chars: int, stop: tuple[str, ...]) -> tuple[str, int] | None:
    # vLLM's check_stop_strings: look only where the new characters could complete a match
    for stop_str in stop:
        index = text.find(stop_str, 1 - new_chars - len(stop_str))
        if index != -1:
            return stop_str, index
    return None


def run_choice(script_for: Callable[[int], Script], limits: Limits) -> ChoiceResult:
    """Generate one choice. ``script_for(n)`` returns a script with at least n tokens.

    As vLLM does: the EOS token counts as a completion token but adds no text; a stop string
    ends the choice at the token that completes it, the text is cut before it, and while
    streaming the last len(longest stop) - 1 characters are held back so that no part of a
    stop string is ever sent.
    """
    horizon = limits.horizon
    eos_at = limits.eos_at
    script = script_for(horizon)
    hold = max((len(s) for s in limits.stop), default=1) - 1
    text = ""
    sent = 0
    steps: list[str] = []
    ids: list[int] = []
    finish_reason = "length"
    stop_reason: str | None = None
    for i in range(1, horizon + 1):
        finished = False
        if i == eos_at:
            finished = True
            finish_reason = "stop"
            ids.append(EOS_ID)
        else:
            delta = script.deltas[i - 1]
            ids.append(script.ids[i - 1])
            text += delta
            if delta and limits.stop and i > limits.min_tokens:
                found = _find_stop(text, len(delta), limits.stop)
                if found is not None:
                    stop_reason, index = found
                    text = text[:index]
                    finished = True
                    finish_reason = "stop"
            if i == horizon:
                finished = True
        target = len(text) if finished else len(text) - hold
        if target > sent:
            steps.append(text[sent:target])
            sent = target
        else:
            steps.append("")
        if finished:
            break
    return ChoiceResult(
        steps=tuple(steps),
        content=text,
        completion_tokens=len(steps),
        finish_reason=finish_reason,
        stop_reason=stop_reason,
        token_ids=tuple(ids),
    )
