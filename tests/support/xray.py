"""A stand-in for the X-Ray daemon: the UDP socket the X-Ray SDK sends segments to
(AWS_XRAY_DAEMON_ADDRESS), keeping every document it receives."""

from __future__ import annotations

import json
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

# One sampled invocation's trace header, as Lambda hands it to the function.
TRACE_ROOT = "1-6740a1b2-0123456789abcdef01234567"
TRACE_PARENT = "53995c3f42cd8ad8"
TRACE_HEADER = f"Root={TRACE_ROOT};Parent={TRACE_PARENT};Sampled=1"


def new_trace() -> tuple[str, str, str]:
    """A fresh sampled trace: (root, parent, header)."""
    root = f"1-{int(time.time()):08x}-{secrets.token_hex(12)}"
    parent = secrets.token_hex(8)
    return root, parent, f"Root={root};Parent={parent};Sampled=1"


class FakeXRayDaemon:
    def __init__(self) -> None:
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._socket.bind(("127.0.0.1", 0))
        self._socket.settimeout(0.2)
        self.address = f"127.0.0.1:{self._socket.getsockname()[1]}"
        self.raw: list[bytes] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._receive, daemon=True)

    def _receive(self) -> None:
        while not self._stop.is_set():
            try:
                data, _ = self._socket.recvfrom(65535)
            except TimeoutError:
                continue
            with self._lock:
                self.raw.append(data)

    def documents(self) -> list[dict[str, Any]]:
        """Each datagram is a `{"format": "json", "version": 1}` line, then the segment."""
        with self._lock:
            raw = list(self.raw)
        documents = []
        for data in raw:
            header, _, body = data.partition(b"\n")
            assert json.loads(header) == {"format": "json", "version": 1}
            documents.append(json.loads(body))
        return documents

    def wait_for(
        self, predicate: Callable[[list[dict[str, Any]]], bool], timeout: float = 10
    ) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            documents = self.documents()
            if predicate(documents) or time.monotonic() > deadline:
                return documents
            time.sleep(0.05)

    def clear(self) -> None:
        with self._lock:
            self.raw.clear()


@contextmanager
def fake_xray_daemon() -> Iterator[FakeXRayDaemon]:
    daemon = FakeXRayDaemon()
    daemon._thread.start()
    try:
        yield daemon
    finally:
        daemon._stop.set()
        daemon._thread.join(timeout=5)
        daemon._socket.close()
