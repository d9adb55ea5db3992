"""Closing an aiohttp session that belongs to another event loop than the running one.

A session (its connector, its pooled connections) is bound to the loop that made it. The
upstream pool (openai_http.HttpPool) and the load sampler (load.LoadSampler) make new
sessions when they are used from a new loop; the old ones are closed on their own loop
here, never left to the garbage collector (which reports each pooled socket as unclosed).
"""

from __future__ import annotations

import asyncio
import concurrent.futures

import aiohttp


def close_on_its_loop(
    session: aiohttp.ClientSession, loop: asyncio.AbstractEventLoop
) -> concurrent.futures.Future[None] | None:
    """Close `session`, made on `loop`, on that loop: at once if it runs (in another
    thread; the future returned tells when it is done), else the next time it runs. A
    closed loop can close nothing: its sockets are the garbage collector's."""
    if session.closed or loop.is_closed():
        return None
    if loop.is_running():
        return asyncio.run_coroutine_threadsafe(session.close(), loop)
    # Not running: the close is made when it runs again (no coroutine is made before, so
    # none is left unawaited if it never does).
    loop.call_soon_threadsafe(lambda: loop.create_task(session.close()))
    return None
