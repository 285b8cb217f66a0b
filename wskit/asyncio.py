"""asyncio backend: concrete Autobahn classes, ``serve()`` and ``connect()``.

Importing this module selects asyncio for txaio. Factories are only built
inside a running loop (a factory built outside binds the wrong loop and every
handshake then times out).
"""

from __future__ import annotations

import asyncio
import functools
import socket
import ssl
from typing import Any

import txaio

txaio.use_asyncio()

from autobahn.asyncio.websocket import (  # noqa: E402
    WebSocketClientFactory as _ClientFactory,
    WebSocketClientProtocol as _ClientProtocol,
    WebSocketServerFactory as _ServerFactory,
    WebSocketServerProtocol as _ServerProtocol,
    yields,
)

from . import metrics, metrics_http  # noqa: E402
from .app import WebSocketApp  # noqa: E402
from .protocol import (  # noqa: E402
    ABORT_GRACE_SECONDS,
    ClientFactoryMixin,
    ClientProtocolMixin,
    ServerFactoryMixin,
    ServerProtocolMixin,
    closing_deadline,
    split_ws_url,
)
from .errors import ListenError, check_tls_files, describe_listen_error  # noqa: E402
from .settings import ClientSettings, ServerSettings, SettingsError  # noqa: E402

class _AsyncioConnection:
    """Flow control on an asyncio transport (shared by both sides' protocol classes)."""

    def pause_writing(self) -> None:
        self._transport_paused()

    def resume_writing(self) -> None:
        self._transport_resumed()

    @property
    def buffered_amount(self) -> int:
        transport = self.transport
        return self._held_bytes() + (transport.get_write_buffer_size() if transport is not None else 0)

    def _message_result(self, result: Any) -> None:
        # As Autobahn's _onMessage: a coroutine or future onMessage returned runs as a task.
        if yields(result):
            asyncio.ensure_future(result)

    def data_received(self, data: bytes) -> None:
        # Autobahn queues each read and parses it from a future's callback, a new
        # future per read; asyncio never calls this re-entrantly, so parse it now
        # (Autobahn's queue then stays empty and its future unresolved).
        if self.transport is None:
            return
        try:
            self._dataReceived(data)
        except Exception:
            # What Autobahn's receive loop does, as Twisted does for dataReceived():
            # log it and drop the connection.
            self.log.error(
                "dropping connection: unhandled error while processing received data:\n{tb}",
                tb=txaio.failure_format_traceback(txaio.create_failure()),
            )
            self._closeConnection(abort=True)

    def _pause_transport_reading(self) -> None:
        self.transport.pause_reading()

    def _resume_transport_reading(self) -> None:
        self.transport.resume_reading()

    def _consume(self) -> None:
        # Autobahn's receive loop waits on a future whose callback refers back to
        # the protocol: a reference cycle. Once the connection is gone there is
        # nothing more to receive; do not wait again.
        if self._transport_gone:
            self.waiter = None
            return
        super()._consume()

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self.waiter = None


class _LoopTimers:
    """Connection timers on the factory's own loop (shared by both sides' factories)."""

    def _call_soon(self, fun: Any) -> None:
        self.loop.call_soon(fun)

    def _timer_clock(self) -> tuple[Any, Any]:
        loop = self.loop

        def call_later(delay: float, fun: Any, *args: Any, **kwargs: Any) -> asyncio.TimerHandle:
            return loop.call_later(delay, functools.partial(fun, *args, **kwargs))

        return loop.time, call_later


class ServerProtocol(_AsyncioConnection, ServerProtocolMixin, _ServerProtocol):
    """A wskit server connection on asyncio; subclass it in Autobahn's style if you like."""

    log = txaio.make_logger()  # events under wskit's namespace, not Autobahn's


class ServerFactory(_LoopTimers, ServerFactoryMixin, _ServerFactory):
    """Autobahn server factory configured from a :class:`WebSocketApp` (or settings).

    Build it inside the running loop (or pass ``loop``): every timer of its
    connections runs on that loop.
    """

    protocol = ServerProtocol

    def __init__(self, app: WebSocketApp | None = None, *, settings: ServerSettings | None = None,
                 protocol: type | None = None, loop: asyncio.AbstractEventLoop | None = None):
        super().__init__(app, settings=settings, protocol=protocol, loop=loop or asyncio.get_running_loop())


class ClientProtocol(_AsyncioConnection, ClientProtocolMixin, _ClientProtocol):
    """A wskit client connection on asyncio."""

    log = txaio.make_logger()  # events under wskit's namespace, not Autobahn's


class ClientFactory(_LoopTimers, ClientFactoryMixin, _ClientFactory):
    protocol = ClientProtocol

    def __init__(self, url: str, settings: ClientSettings | None = None, handler_factory: Any = None,
                 protocol: type | None = None, loop: asyncio.AbstractEventLoop | None = None):
        super().__init__(url, settings, handler_factory, protocol, loop=loop or asyncio.get_running_loop())


def server_ssl_context(settings: ServerSettings) -> ssl.SSLContext | None:
    if not settings.tls.enabled:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(settings.tls.cert, settings.tls.key)
    return context


class WebSocketServer:
    """A running asyncio server: ``port``, ``app``, ``close()`` and ``wait_closed()``."""

    def __init__(self, server: asyncio.base_events.Server, app: WebSocketApp, metrics_server: Any = None):
        self._server = server
        self.app = app
        self._closing: list[Any] = []  # is_gone futures of the connections close() is closing
        self._metrics_server = metrics_server

    @property
    def metrics_port(self) -> int | None:
        """The port of the ``/metrics`` endpoint (None without ``settings.metrics``)."""
        return None if self._metrics_server is None else metrics_http.listening_port(self._metrics_server)

    @property
    def port(self) -> int:
        return self._server.sockets[0].getsockname()[1]

    @property
    def sockets(self):
        return self._server.sockets

    def close(self) -> None:
        """Stop listening and start closing every connection with 1001."""
        self._server.close()
        if self._metrics_server is not None:
            self._metrics_server.close()
        self.app.stop()
        self._closing = self.app.close_all()

    async def wait_closed(self) -> None:
        """Wait until every connection is gone and its close line logged.

        A peer that has not answered by the close-handshake timeout is dropped
        by then; whatever is left at :func:`closing_deadline` is aborted and
        waited for a moment more.
        """
        if self._closing:
            _done, pending = await asyncio.wait(self._closing, timeout=closing_deadline(self.app.settings))
            if pending:
                self.app.abort_all()
                await asyncio.wait(pending, timeout=ABORT_GRACE_SECONDS)
        await self._server.wait_closed()

    async def serve_forever(self) -> None:
        await self._server.serve_forever()

    async def __aenter__(self) -> WebSocketServer:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self.close()
        await self.wait_closed()


async def serve(settings: ServerSettings | None = None, app: WebSocketApp | None = None,
                protocol: type | None = None, sock: socket.socket | None = None) -> WebSocketServer:
    """Listen on ``settings.host:settings.port`` (or accept on ``sock``, a bound
    and listening socket); returns once bound. With ``settings.metrics`` on it
    records metrics and serves them too (``metrics_port``).

    Example::

        async def main():
            server = await wskit.asyncio.serve(ServerSettings(port=9000))
            await server.serve_forever()
    """
    app = app or WebSocketApp(settings)
    if app.settings.endpoint:
        raise SettingsError("Twisted endpoint strings (--endpoint) need the twisted backend")
    check_tls_files(app.settings)
    if app.settings.metrics.enabled:
        metrics.enable()
    factory = ServerFactory(app, protocol=protocol)
    loop = asyncio.get_running_loop()
    where = {"sock": sock} if sock is not None else {"host": app.settings.host, "port": app.settings.port}
    try:
        server = await loop.create_server(factory, ssl=server_ssl_context(app.settings), **where)
    except (OSError, ssl.SSLError) as exc:
        raise ListenError(describe_listen_error(exc, app.settings)) from None
    metrics_server = None
    if app.settings.metrics.enabled:
        try:
            metrics_server = await metrics_http.serve_asyncio(app.settings.metrics)
        except ListenError:
            server.close()
            raise
    app.start()
    return WebSocketServer(server, app, metrics_server)


def client_ssl_context(ca_file: str | None) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if ca_file:
        context.load_verify_locations(ca_file)
    return context


async def connect(url: str, settings: ClientSettings | None = None, handler_factory: Any = None,
                  protocol: type | None = None) -> ClientProtocol:
    """Open a client connection and return the open ``ClientProtocol``.

    Raises :class:`wskit.HandshakeError` when the server refuses, ``OSError``
    when TCP or TLS fails.
    """
    host, port, secure = split_ws_url(url)
    factory = ClientFactory(url, settings, handler_factory, protocol=protocol)
    loop = asyncio.get_running_loop()
    _transport, proto = await loop.create_connection(
        factory,
        host,
        port,
        ssl=client_ssl_context(factory.wskit_settings.ca_file) if secure else None,
        server_hostname=host if secure else None,
    )
    await proto.is_open
    return proto


def install_uvloop() -> bool:
    """Use uvloop's event loop policy when it is installed; True if it is now in use."""
    try:
        import uvloop
    except ImportError:
        return False
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return True


__all__ = [
    "ClientFactory",
    "ClientProtocol",
    "ServerFactory",
    "ServerProtocol",
    "WebSocketServer",
    "connect",
    "install_uvloop",
    "serve",
]
