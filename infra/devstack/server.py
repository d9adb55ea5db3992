"""How the local stack serves the gateway: uvicorn with limits on what one client may hold.

uvicorn's defaults read a request's header without bound (httptools) and keep any number
of connections. `make run` serves with:

- h11 as the HTTP parser, whose `h11_max_incomplete_event_size` caps the bytes buffered
  for an incomplete request head: a larger one is answered 400 and closed at once
  (HEADER_LIMIT_BYTES, above API Gateway's own 10,240-byte cap on a REST API's request
  line and headers, so nothing the deployed API accepts is refused here);
- `timeout_keep_alive` (KEEP_ALIVE_SECONDS): an idle connection between requests is closed;
- `limit_concurrency` (MAX_CONCURRENCY): past that many connections or tasks, a new
  request is answered 503 instead of queued.

uvicorn has no timeout for a request head that never completes: a client that trickles a
header holds its connection (at most HEADER_LIMIT_BYTES of memory) until it stops, and
counts against MAX_CONCURRENCY. functions/run.sh (the deployed StreamFunction) keeps
httptools, which costs less CPU per request; API Gateway bounds the header there.
"""

from __future__ import annotations

import sys

HEADER_LIMIT_BYTES = 16 * 1024
KEEP_ALIVE_SECONDS = 5
MAX_CONCURRENCY = 256

UVICORN_LIMITS = [
    "--http", "h11",
    "--h11-max-incomplete-event-size", str(HEADER_LIMIT_BYTES),
    "--timeout-keep-alive", str(KEEP_ALIVE_SECONDS),
    "--limit-concurrency", str(MAX_CONCURRENCY),
]  # fmt: skip


def gateway_command(port: int, *, host: str = "127.0.0.1") -> list[str]:
    """The command line that serves the gateway app on host:port, as `make run` does."""
    return [
        sys.executable, "-m", "uvicorn", "--factory", "gateway.app:create_app",
        "--host", host, "--port", str(port), "--no-access-log", *UVICORN_LIMITS,
    ]  # fmt: skip
