"""Twisted side of :func:`wskit.connect` (imported only when that backend is chosen)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet import defer, error

from wskit import twisted as wtwisted
from wskit.settings import ClientSettings

from .connection import ClientConnection
from .reconnect import Reconnecting


class Driver:
    """How the reconnecting loop opens connections, waits and reads the clock on a reactor.

    ``reactor`` is the one connections and timers run on (the global reactor
    when None, imported only when first needed).
    """

    # Network trouble: refused, timed out, no route, DNS, the TCP connection lost.
    network_errors: tuple[type, ...] = (error.ConnectError, error.ConnectionClosed, OSError, TimeoutError)

    def __init__(self, url: str, settings: ClientSettings, reactor: Any = None):
        self.url = url
        self.settings = settings
        self._reactor = reactor

    @property
    def reactor(self) -> Any:
        if self._reactor is None:
            from twisted.internet import reactor

            self._reactor = reactor
        return self._reactor

    def future(self, coro: Any) -> defer.Deferred:
        return defer.ensureDeferred(coro)

    def call_later(self, delay: float, fn: Callable[[], Any]) -> Callable[[], Any]:
        call = self.reactor.callLater(delay, fn)
        return lambda: call.cancel() if call.active() else None

    def seconds(self) -> float:
        return self.reactor.seconds()

    async def open(self, conn: ClientConnection) -> ClientConnection:
        await wtwisted.connect(self.url, self.settings, conn._make_handler, reactor=self.reactor)
        return conn


class Connecting(defer.Deferred):
    """A Deferred firing with the :class:`ClientConnection`, usable as ``async with`` too,
    and as ``async for conn in connect(...)`` (a new connection after each loss)."""

    connection: ClientConnection | None = None
    driver: Driver | None = None

    def __aenter__(self) -> defer.Deferred:
        entered: defer.Deferred = defer.Deferred()

        def opened(conn: ClientConnection) -> ClientConnection:
            entered.callback(conn)
            return conn

        def failed(fail: Any) -> None:
            entered.errback(fail)  # the failure now belongs to the ``async with``

        self.addCallbacks(opened, failed)
        return entered

    def __aexit__(self, *exc: Any) -> defer.Deferred:
        if self.connection is None:
            return defer.succeed(None)
        return self.connection.close()

    def __aiter__(self) -> Reconnecting:
        # The first attempt is this Deferred, started when connect() was called.
        settings = self.driver.settings
        return Reconnecting(self.driver, settings.reconnect, lambda: ClientConnection(settings.max_queue),
                            first=self)


def connect_twisted(url: str, settings: ClientSettings, reactor: Any = None) -> Connecting:
    conn = ClientConnection(settings.max_queue)
    result = Connecting()
    result.driver = Driver(url, settings, reactor)

    def opened(_conn: Any) -> None:
        result.connection = conn
        result.callback(conn)

    try:
        d = defer.ensureDeferred(result.driver.open(conn))
    except Exception:
        result.errback()
        return result
    d.addCallbacks(opened, result.errback)
    return result


def start(coro: Any) -> defer.Deferred:
    """Run a coroutine under ``ensureDeferred``: the result is a Deferred."""
    return defer.ensureDeferred(coro)
