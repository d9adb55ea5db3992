"""Output screening of a stream: a wrapper around the backend's chunk iterator.

The upstream's chunks are held back until the text they carry has been screened: every
`window_tokens` tokens (counted with the guarded model's tokenizer; on a cold instance whose
tokenizer is still loading, estimated at 4 characters a token), the guard reads each
choice's completion so far, and at the end of the stream it reads what is left. A window
that passes is released to the relay unchanged; a window that is blocked never reaches
the client: its chunks are billed (the Meter observes them) and the stream ends with one
chunk whose choices finish with `content_filter`. So no unscreened token ever reaches the
client, and what the client waits for is at most one window plus one guard call.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any, Protocol

from gateway.backends.chunks import aclose_of
from gateway.guard.prompt import Verdict
from gateway.metering import Meter
from gateway.metering.guard_ledger import GuardAction, GuardLedger


class WindowScreener(Protocol):
    """What a screened stream asks of its request's screening (guard/service.py)."""

    meter: Meter
    ledger: GuardLedger

    async def screen_many(self, items: Sequence[tuple[int, str]]) -> dict[int, Verdict | None]: ...

    def decide(self, verdict: Verdict | None) -> tuple[str, ...]: ...


def delta_text(delta: Mapping[str, Any]) -> str:
    """The text one chunk's delta adds: content and tool-call name / argument pieces."""
    parts = [delta["content"]] if isinstance(delta.get("content"), str) else []
    for call in delta.get("tool_calls") or ():
        function = call.get("function") if isinstance(call, Mapping) else None
        if isinstance(function, Mapping):
            parts.extend(v for k in ("name", "arguments") if isinstance(v := function.get(k), str))
    return "".join(parts)


def _rough_count(text: str) -> int:
    return len(text) // 4 + 1


class ScreenedChunks:
    """An AsyncIterator of chat.completion.chunk dicts, each released once screened."""

    def __init__(
        self,
        chunks: AsyncIterator[dict[str, Any]],
        screening: WindowScreener,
        *,
        window_tokens: int,
    ) -> None:
        self._chunks = chunks
        self._screening = screening
        self._window = window_tokens
        tokenizer = screening.meter.tokenizer
        self._count: Callable[[str], int] = tokenizer.count_text if tokenizer else _rough_count
        self._ready: deque[dict[str, Any]] = deque()
        self._pending: list[dict[str, Any]] = []
        self._pending_tokens = 0
        self._texts: dict[int, list[str]] = {}  # each choice's completion so far
        self._unscreened: set[int] = set()
        self._open: set[int] = set()  # choices seen whose finish the client has not seen
        self._done = False

    def __aiter__(self) -> ScreenedChunks:
        return self

    async def __anext__(self) -> dict[str, Any]:
        while not self._ready:
            if self._done:
                raise StopAsyncIteration
            await self._pull()
        return self._ready.popleft()

    async def aclose(self) -> None:
        self._done = True
        self._withhold()  # the client left while a window was held: generated, so billed
        await aclose_of(self._chunks)

    async def _pull(self) -> None:
        try:
            chunk = await self._chunks.__anext__()
        except StopAsyncIteration:
            self._done = True
            await self._screen_window()  # the end of the stream: screen what is left
            return
        self._hold(chunk)
        if self._pending_tokens >= self._window:
            await self._screen_window()

    def _hold(self, chunk: dict[str, Any]) -> None:
        self._pending.append(chunk)
        for choice in chunk.get("choices") or ():
            index = choice.get("index", 0)
            self._open.add(index)
            text = delta_text(choice.get("delta") or {})
            if text:
                self._texts.setdefault(index, []).append(text)
                self._unscreened.add(index)
                self._pending_tokens += self._count(text)

    async def _screen_window(self) -> None:
        items = [(i, "".join(self._texts[i])) for i in sorted(self._unscreened)]
        self._unscreened.clear()
        self._pending_tokens = 0
        try:
            verdicts = await self._screening.screen_many(items) if items else {}
        except BaseException:  # a fail-closed guard (or a cancellation): bill, never show
            self._withhold()
            raise
        blocked = [self._screening.decide(v) for v in verdicts.values()]
        if any(blocked):
            self._block()
        else:
            self._release()

    def _release(self) -> None:
        for chunk in self._pending:
            for choice in chunk.get("choices") or ():
                if choice.get("finish_reason"):
                    self._open.discard(choice.get("index", 0))
        self._ready.extend(self._pending)
        self._pending = []

    def _withhold(self) -> None:
        """The held chunks never reach the client; the Meter bills them (generated)."""
        for chunk in self._pending:
            self._screening.meter.observe_chunk(chunk)
        self._pending = []

    def _block(self) -> None:
        self._withhold()
        self._screening.ledger.action = GuardAction.BLOCKED_OUTPUT
        choices: list[dict[str, Any]] = [
            {"index": i, "delta": {}, "logprobs": None, "finish_reason": "content_filter"}
            for i in sorted(self._open)
        ]
        self._ready.append({"choices": choices})
        self._done = True
