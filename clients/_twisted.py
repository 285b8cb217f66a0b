"""Twisted side of :func:`wskit.connect` (imported only when that backend is chosen)."""

from __future__ import annotations

from typing import Any

from twisted.internet import defer

from wskit import twisted as wtwisted
from wskit.settings import ClientSettings

from .connection import ClientConnection


class Connecting(defer.Deferred):
    """A Deferred firing with the :class:`ClientConnection`, usable as ``async with`` too."""

    connection: ClientConnection | None = None

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


def connect_twisted(url: str, settings: ClientSettings, reactor: Any = None) -> Connecting:
    conn = ClientConnection(settings.max_queue)
    result = Connecting()

    def opened(_protocol: Any) -> None:
        result.connection = conn
        result.callback(conn)

    try:
        d = wtwisted.connect(url, settings, conn._make_handler, reactor=reactor)
    except Exception:
        result.errback()
        return result
    d.addCallbacks(opened, result.errback)
    return result
