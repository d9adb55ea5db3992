"""The output items a Responses stream (stream.py) has open: a reasoning item or a
message streams as one content part, a function call as its arguments."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from gateway.responses.answer import Status, message_item, reasoning_item


class OpenItem:
    """The output item being streamed."""

    def __init__(self, index: int, item: str, kind: str, *, call: int = -1) -> None:
        self.index = index
        self.id = item
        self.kind = kind  # "reasoning", "message" or "function_call"
        self.call = call  # the chat tool call's index
        self.text: list[str] = []
        self.call_id = ""
        self.name = ""


@dataclass(frozen=True)
class ContentKind:
    """An item streamed as one content part: its type, id prefix, delta/done event
    family, the item and part it shows, and whether its text events carry `logprobs`."""

    name: Literal["reasoning", "message"]
    prefix: Literal["rs", "msg"]
    text: str
    item: Callable[[str, str, Status], dict[str, Any]]
    part: Callable[[str], dict[str, Any]]
    logprobs: bool

    def extra(self) -> dict[str, Any]:
        """The fields its text events carry besides the text."""
        return {"logprobs": []} if self.logprobs else {}


def _text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "annotations": [], "logprobs": [], "text": text}


def _reasoning_part(text: str) -> dict[str, Any]:
    return {"type": "reasoning_text", "text": text}


REASONING = ContentKind("reasoning", "rs", "reasoning_text", reasoning_item, _reasoning_part, False)
MESSAGE = ContentKind("message", "msg", "output_text", message_item, _text_part, True)
