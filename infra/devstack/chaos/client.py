"""The clients of a chaos run: `concurrency` at once, each request as its Spec says.

A client that stays reads the whole answer; one that drops a stream closes it after two
chunks; one that leaves gives up `leave_seconds` after sending, before the first byte (the
connection is closed). Each keeps its status, the gateway's request id when the headers
came, and when it left (seconds after sending).
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any

import httpx

from devstack.chaos.plan import Spec


class Progress:
    """How many requests are done; a fault can wait for a count."""

    def __init__(self) -> None:
        self.done = 0
        self._changed = asyncio.Condition()

    async def advance(self) -> None:
        async with self._changed:
            self.done += 1
            self._changed.notify_all()

    async def reached(self, count: float) -> None:
        async with self._changed:
            await self._changed.wait_for(lambda: self.done >= count)


# Not a key the gateway made: refused at authentication, so it leaves no record.
FORGED_SECRET = "sk-chaos-not-a-key"


@dataclass
class Outcome:
    spec: Spec
    status: int | None  # None: no response (the client left first, or the connection broke)
    request_id: str | None
    seconds: float
    left_at: float | None = None  # seconds after sending when the client went away
    sent_wall: float = 0.0  # time.time() when sent: matched against the record's times
    error_code: str | None = None  # the error body's code (or the stream's error event's)
    error_message: str = ""
    chunks: int = 0
    transport_error: str | None = None
    # The request's headers were written to the gateway's socket (httpcore's trace): a
    # client that left before had sent nothing the gateway could see.
    sent: bool = False


def _error(body: bytes) -> tuple[str | None, str]:
    try:
        error = json.loads(body).get("error") or {}
    except (ValueError, AttributeError):
        return None, body[:200].decode(errors="replace")
    return error.get("code"), str(error.get("message", ""))


def _traced(outcome: Outcome) -> dict[str, Any]:
    """httpcore's trace extension, noting when the request's headers were sent."""

    async def trace(name: str, _info: dict[str, Any]) -> None:
        if name == "http11.send_request_headers.complete":
            outcome.sent = True

    return {"trace": trace}


async def _stream(
    client: httpx.AsyncClient, spec: Spec, headers: dict[str, str], outcome: Outcome,
    started: float,
) -> None:  # fmt: skip
    async with client.stream(
        "POST", spec.path(), json=spec.body(), headers=headers, extensions=_traced(outcome)
    ) as r:
        outcome.status = r.status_code
        outcome.request_id = r.headers.get("x-request-id")
        if r.status_code != 200:
            outcome.error_code, outcome.error_message = _error(await r.aread())
            return
        async for line in r.aiter_lines():
            if not line.startswith("data:"):
                continue
            outcome.chunks += 1
            data = line[5:].strip()
            if data.startswith("{") and '"error"' in data:
                outcome.error_code, outcome.error_message = _error(data.encode())
            if spec.behaviour.client == "drop" and outcome.chunks >= 2:
                outcome.left_at = time.monotonic() - started
                return  # closes the connection mid-stream


async def _buffered(
    client: httpx.AsyncClient, spec: Spec, headers: dict[str, str], outcome: Outcome
) -> None:
    r = await client.post(
        spec.path(), json=spec.body(), headers=headers, extensions=_traced(outcome)
    )
    outcome.status = r.status_code
    outcome.request_id = r.headers.get("x-request-id")
    if r.status_code != 200:
        outcome.error_code, outcome.error_message = _error(r.content)


async def send_one(client: httpx.AsyncClient, spec: Spec, secret: str) -> Outcome:
    outcome = Outcome(spec, None, None, 0.0)
    if not spec.behaviour.authenticated:
        secret = FORGED_SECRET
    headers = {"Authorization": f"Bearer {secret}"}
    outcome.sent_wall = time.time()
    started = time.monotonic()
    if spec.behaviour.stream:
        work = _stream(client, spec, headers, outcome, started)
    else:
        work = _buffered(client, spec, headers, outcome)
    try:
        if spec.behaviour.client == "leave":
            try:
                await asyncio.wait_for(work, timeout=spec.leave_seconds)
            except TimeoutError:
                outcome.left_at = time.monotonic() - started
        else:
            await work
    except httpx.TimeoutException as exc:  # the client gave up waiting: it left
        outcome.transport_error = type(exc).__name__
        outcome.left_at = time.monotonic() - started
    except httpx.HTTPError as exc:
        outcome.transport_error = type(exc).__name__
    outcome.seconds = time.monotonic() - started
    return outcome


async def run_clients(
    base_url: str,
    specs: list[Spec],
    secrets: dict[str, str],
    *,
    concurrency: int,
    progress: Progress,
    read_timeout: float = 15.0,
) -> list[Outcome]:
    """Every spec, `concurrency` at a time, over one connection pool. A client waits
    `read_timeout` for each read, then leaves (as a client would give up on a hang). The
    pool has room for twice the clients: the connection of a client that left may still
    be closing, and a client must never wait for the pool (an early leaver would then
    leave before sending anything)."""
    limits = httpx.Limits(max_connections=2 * concurrency, max_keepalive_connections=concurrency)
    client = httpx.AsyncClient(base_url=base_url, timeout=read_timeout, limits=limits)
    queue: asyncio.Queue[Spec] = asyncio.Queue()
    for spec in specs:
        queue.put_nowait(spec)
    outcomes: list[Outcome] = []

    async def worker() -> None:
        while not queue.empty():
            spec = queue.get_nowait()
            outcome = await send_one(client, spec, secrets[spec.key])
            outcomes.append(outcome)
            await progress.advance()

    try:
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    finally:
        await client.aclose()
    return outcomes
