"""Notice a client going away and cancel the generation serving it."""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import Any

from starlette.types import Receive


class DisconnectWatch:
    """Listen for ``http.disconnect`` while a response is generated; on disconnect cancel the
    task that entered the watch (the task that runs the ASGI app).

    uvicorn's ``send`` silently drops messages for a connection that has gone, so a failing
    send cannot be relied on: this listens on ``receive`` instead, as Starlette does. Set
    ``armed = False`` before the final send so a disconnect after the response is complete is
    not taken for a cancellation.
    """

    def __init__(self, receive: Receive) -> None:
        self._receive = receive
        self._owner: asyncio.Task[Any] | None = None
        self._listener: asyncio.Task[None] | None = None
        self.disconnected = False
        self.armed = True
        self.cancelled = False  # the generation was stopped because the client went away

    async def _listen(self) -> None:
        while True:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                self.disconnected = True
                if self.armed and self._owner is not None:
                    self._owner.cancel()
                return

    def __enter__(self) -> DisconnectWatch:
        self._owner = asyncio.current_task()
        self._listener = asyncio.get_running_loop().create_task(self._listen())
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        if self._listener is not None:
            self._listener.cancel()
        if exc_type is asyncio.CancelledError and self.disconnected and self._owner is not None:
            # our own cancellation: swallow it and let the app return normally
            self._owner.uncancel()
            self.cancelled = True
            return True
        return False
