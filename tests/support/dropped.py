"""A streamed request whose client goes away mid-stream (a raw socket, closed after a few
events), and the simulator's counters seen until they settle."""

from __future__ import annotations

import json
import socket
import time
import urllib.parse
from typing import Any

import httpx


def drop_after(base: str, path: str, body: dict[str, Any], *, events: int) -> None:
    """POST ``body`` to ``path``, read until ``events`` SSE ``data:`` lines arrived, then
    close the connection."""
    raw = json.dumps(body).encode()
    url = urllib.parse.urlsplit(base)
    assert url.hostname is not None and url.port is not None
    with socket.create_connection((url.hostname, url.port), timeout=30) as sock:
        head = f"POST {path} HTTP/1.1\r\nHost: sim\r\nContent-Type: application/json\r\n"
        sock.sendall(f"{head}Content-Length: {len(raw)}\r\n\r\n".encode() + raw)
        received = b""
        while received.count(b"data: ") < events:
            data = sock.recv(65536)
            assert data, "stream ended early"
            received += data


def settled_stats(base: str, **expected: int) -> dict[str, Any]:
    """/sim/stats once it shows ``expected`` (polled: the server notices a disconnect
    asynchronously); fails if it never does within 5 s."""
    deadline = time.monotonic() + 5
    while True:
        current: dict[str, Any] = httpx.get(base + "/sim/stats", timeout=5).json()
        if all(current[k] == v for k, v in expected.items()):
            return current
        assert time.monotonic() < deadline, f"stats {current} never reached {expected}"
        time.sleep(0.02)
