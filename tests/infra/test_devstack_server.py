"""`make run`'s gateway server (devstack.server): a huge request header is refused after a
bounded read, with bounded memory, and the server keeps serving."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator

import httpx
import pytest
from devstack.server import HEADER_LIMIT_BYTES, gateway_command

from tests.support.processes import stop
from tests.support.servers import free_port

HUGE_HEADER_BYTES = 64 * 1024 * 1024
CHUNK = 64 * 1024
MIB = 1024 * 1024


def peak_rss_bytes(pid: int) -> int:
    """The process's high-water mark of resident memory (VmHWM), from /proc."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc/<pid>/status")


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    port = free_port()
    env = {
        **os.environ,
        "MODELS_CONFIG": '{"models": []}',
        "POWERTOOLS_METRICS_DISABLED": "true",
        "LOG_LEVEL": "WARNING",
    }
    process = subprocess.Popen(
        [*gateway_command(port), "--log-level", "warning"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(url + "/health", timeout=2).raise_for_status()
                break
            except httpx.HTTPError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the gateway did not start") from None
                time.sleep(0.1)
        yield url, process
    finally:
        stop(process)


def send_huge_header(port: int) -> tuple[int, bytes]:
    """Send a request whose one header is 64 MiB, in chunks, until the server answers or
    closes; returns how many bytes went out and what came back."""
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: localhost\r\nX-Huge: ")
        sock.setblocking(False)
        answer = b""
        while sent < HUGE_HEADER_BYTES:
            try:
                answer += sock.recv(65536)  # an answer, or b"" once closed: either way, stop
                break
            except BlockingIOError:
                pass
            try:
                sent += sock.send(b"a" * CHUNK)
            except BlockingIOError:
                time.sleep(0.001)
            except (BrokenPipeError, ConnectionResetError):
                break
        sock.setblocking(True)
        sock.settimeout(10)
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except (ConnectionResetError, TimeoutError):
            pass
    return sent, answer


def test_a_64_mib_header_is_refused_after_a_bounded_read(
    server: tuple[str, subprocess.Popen[bytes]],
) -> None:
    url, process = server
    port = int(url.rsplit(":", 1)[1])
    before = peak_rss_bytes(process.pid)
    sent, answer = send_huge_header(port)
    status = int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else None
    assert status in (400, 431), answer[:200]
    # Refused long before the end: the server stopped reading (socket buffers hold a few
    # MiB at most), and its peak memory grew by far less than the header.
    assert sent < HUGE_HEADER_BYTES // 4, sent
    grown = peak_rss_bytes(process.pid) - before
    assert grown < 8 * MIB, f"peak RSS grew by {grown / MIB:.1f} MiB"
    assert httpx.get(url + "/health", timeout=10).status_code == 200  # still serving


def test_a_header_within_the_limit_is_served(server: tuple[str, subprocess.Popen[bytes]]) -> None:
    url, _ = server
    # API Gateway's own cap is 10,240 bytes of request line and headers: all of it passes.
    response = httpx.get(url + "/health", headers={"X-Big": "a" * 10_000}, timeout=10)
    assert response.status_code == 200
    assert HEADER_LIMIT_BYTES > 10_240
