"""The one server-sent-events decoder, shared by every upstream backend.

Bytes arrive in arbitrary pieces (mid-line, mid-UTF-8 character, several events at once):
HTTP reads, SageMaker `PayloadPart`s. `SSEDecoder.feed` yields the `data` of each complete
event; a line that is a bare JSON object (JSON lines, LMI's default) counts as one event.
An event larger than `max_event_bytes` is refused: an upstream cannot make the gateway
buffer without bound.
"""

from __future__ import annotations

from gateway.errors import UpstreamError

DONE = b"[DONE]"
# vLLM's largest events (a tool call's arguments, logprobs of a long chunk) are far below.
MAX_EVENT_BYTES = 1 << 20


class SSEDecoder:
    def __init__(self, *, max_event_bytes: int = MAX_EVENT_BYTES) -> None:
        self._buffer = bytearray()
        self._data: list[bytes] = []
        self._data_size = 0
        self._max = max_event_bytes

    def feed(self, piece: bytes) -> list[bytes]:
        """The events completed by this piece, in order."""
        self._buffer += piece
        events: list[bytes] = []
        start = 0
        while (end := self._buffer.find(b"\n", start)) != -1:
            event = self._line(bytes(self._buffer[start:end]).rstrip(b"\r"))
            start = end + 1
            if event is not None:
                events.append(event)
        del self._buffer[:start]
        if len(self._buffer) + self._data_size > self._max:
            raise UpstreamError("The model endpoint sent an event over the size limit.")
        return events

    def close(self) -> list[bytes]:
        """End of stream: what is left, even without its final blank line."""
        events: list[bytes] = []
        if self._buffer:
            event = self._line(bytes(self._buffer).rstrip(b"\r"))
            self._buffer.clear()
            if event is not None:
                events.append(event)
        if self._data:
            events.append(b"\n".join(self._data))
            self._data, self._data_size = [], 0
        return events

    def _line(self, line: bytes) -> bytes | None:
        if not line:
            if self._data:
                payload = b"\n".join(self._data)
                self._data, self._data_size = [], 0
                return payload
            return None
        if line.startswith(b"data:"):
            data = line[6:] if line[5:6] == b" " else line[5:]
            self._data.append(data)
            self._data_size += len(data)
        elif line.startswith(b"{") and not self._data:
            return line
        return None  # event:, id:, retry: and comments


def until_done(events: list[bytes]) -> tuple[list[bytes], bool]:
    """The events before `[DONE]`, and whether `[DONE]` was among them."""
    for position, event in enumerate(events):
        if event.strip() == DONE:
            return events[:position], True
    return events, False
