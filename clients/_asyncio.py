"""asyncio side of :func:`wskit.connect` (imported only when that backend is chosen)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from wskit import asyncio as wasyncio
from wskit.settings import ClientSettings

from .connection import ClientConnection
from .reconnect import Reconnecting


class Driver:
    """How the reconnecting loop opens connections, waits and reads the clock on asyncio."""

    # Network trouble: refused, reset, unreachable, DNS (all OSError), timeouts.
    network_errors: tuple[type, ...] = (OSError, asyncio.TimeoutError)

    def __init__(self, url: str, settings: ClientSettings):
        self.url = url
        self.settings = settings

    def future(self, coro: Any) -> asyncio.Future:
        return asyncio.ensure_future(coro)

    def call_later(self, delay: float, fn: Callable[[], Any]) -> Callable[[], Any]:
        return asyncio.get_running_loop().call_later(delay, fn).cancel

    def seconds(self) -> float:
        return asyncio.get_running_loop().time()

    async def open(self, conn: ClientConnection) -> ClientConnection:
        await wasyncio.connect(self.url, self.settings, conn._make_handler)
        return conn


class Connecting:
    """Awaitable (``conn = await connect(...)``), an async context manager, and
    an async iterator of connections (``async for conn in connect(...)``).

    The connection starts when first awaited or entered, inside the running
    loop (an Autobahn factory built outside it would bind the wrong loop).
    """

    def __init__(self, url: str, settings: ClientSettings):
        self.url = url
        self.settings = settings
        self.connection: ClientConnection | None = None
        self._task: asyncio.Future | None = None

    async def _connect(self) -> ClientConnection:
        conn = await Driver(self.url, self.settings).open(ClientConnection(self.settings.max_queue))
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

    def __aiter__(self) -> Reconnecting:
        settings = self.settings
        return Reconnecting(Driver(self.url, settings), settings.reconnect,
                            lambda: ClientConnection(settings.max_queue))


def start(coro: Any) -> asyncio.Future:
    """Run a coroutine as a task: the result is an asyncio future."""
    return asyncio.ensure_future(coro)
