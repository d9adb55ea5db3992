"""Free TCP ports on 127.0.0.1 for the servers a local stack starts."""

from __future__ import annotations

import socket
from contextlib import ExitStack

__all__ = ["free_port", "free_ports"]


def free_ports(count: int) -> list[int]:
    """`count` distinct free ports. Every socket stays bound until all are chosen: a port
    released at once can come back from the very next bind, and two servers then share
    it (one fails to bind, and its health check reaches the other)."""
    with ExitStack() as held:
        sockets = [held.enter_context(socket.socket()) for _ in range(count)]
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in sockets]


def free_port() -> int:
    """One free port, for a server bound at once (several at a time: free_ports)."""
    return free_ports(1)[0]
