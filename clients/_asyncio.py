"""asyncio side of :func:`wskit.connect` (imported only when that backend is chosen)."""

from __future__ import annotations

import asyncio
from typing import Any

from wskit import asyncio as wasyncio
from wskit.settings import ClientSettings

from .connection import ClientConnection


class Connecting:
    """Awaitable (``conn = await connect(...)``) and an async context manager.

    The connection starts when first awaited or entered, inside the running
    loop (an Autobahn factory built outside it would bind the wrong loop).
    """

    def __init__(self, url: str, settings: ClientSettings):
        self.url = url
        self.settings = settings
        self.connection: ClientConnection | None = None
        self._task: asyncio.Future | None = None

    async def _connect(self) -> ClientConnection:
        conn = ClientConnection(self.settings.max_queue)
        await wasyncio.connect(self.url, self.settings, conn._make_handler)
        self.connection = conn
        return conn

    def _start(self) -> asyncio.Future:
        if self._task is None:
            self._task = asyncio.ensure_future(self._connect())
        return self._task

    def __await__(self) -> Any:
        return self._start().__await__()

    async def __aenter__(self) -> ClientConnection:
        return await self._start()

    async def __aexit__(self, *exc: Any) -> None:
        if self.connection is not None:
            await self.connection.close()
