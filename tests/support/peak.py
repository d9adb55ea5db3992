"""Peak memory of one piece of work, for the memory tests' child processes
(tests/gateway/tokens/test_memory.py, measure_memory.py).

Linux only: the process's high-water mark (ru_maxrss) is reset to its current RSS first
(/proc/self/clear_refs), so that what was allocated before (a tokenizer's load) does not hide
the work's own peak. Elsewhere the peak is measured from the process's start."""

from __future__ import annotations

import resource
from collections.abc import Callable
from typing import Any, TypeVar

from gateway.tokens import ChatTokenizer

T = TypeVar("T")


def peak_mb(work: Callable[[], T]) -> tuple[T, float]:
    """`work()`, and how far the process's peak RSS rose while it ran, in MiB."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")  # the peak so far becomes the current RSS
    except OSError:
        pass
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    done = work()
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return done, (after - before) / 1024


def count(tokenizer: ChatTokenizer, text: str) -> int:
    """The text's count as a request's prompt: a user turn where the model has a chat
    template, else a completions prompt."""
    if tokenizer.has_chat_template:
        return tokenizer.count_chat([{"role": "user", "content": text}])
    return tokenizer.count_text_with_special(text)


def request_path(tokenizer: ChatTokenizer, text: str, *, limit: int) -> dict[str, Any]:
    """What the request path does with a prompt of `text` for a model of context `limit`:
    the lower bound (chat/service.py `prompt_lower_bound`; completions: `each_lower_bound`),
    then the count only if the bound is under the limit (`tokens` None: refused on it)."""
    if tokenizer.has_chat_template:
        bound = tokenizer.lower_bound([text])
    else:
        bound = tokenizer.each_lower_bound([text], over_chars=0)[0]
    return {"bound": bound, "tokens": count(tokenizer, text) if bound < limit else None}
