"""Twisted backend: concrete Autobahn classes, the Site, the IService, connect().

Importing this module selects Twisted for txaio. It does not import
``twisted.internet.reactor``: factories, services and ``connect`` take the
reactor as an argument and fall back to the global one only when called
without it, so a connection can be driven on ``MemoryReactorClock``.
"""

from __future__ import annotations

from typing import Any

import txaio

txaio.use_twisted()

from autobahn.twisted.resource import WebSocketResource  # noqa: E402
from autobahn.twisted.websocket import (  # noqa: E402
    WebSocketClientFactory as _ClientFactory,
    WebSocketClientProtocol as _ClientProtocol,
    WebSocketServerFactory as _ServerFactory,
    WebSocketServerProtocol as _ServerProtocol,
)
from twisted.application import service  # noqa: E402
from twisted.internet import defer, endpoints  # noqa: E402
from twisted.internet.interfaces import IPushProducer  # noqa: E402
from twisted.python.failure import Failure  # noqa: E402
from twisted.web import resource, server, static  # noqa: E402
from zope.interface import implementer  # noqa: E402

from . import metrics, metrics_http  # noqa: E402
from .app import WebSocketApp  # noqa: E402
from .errors import ListenError, check_tls_files, describe_listen_error  # noqa: E402
from .protocol import (  # noqa: E402
    ClientFactoryMixin,
    ClientProtocolMixin,
    ServerFactoryMixin,
    ServerProtocolMixin,
    closing_deadline,
    split_ws_url,
)
from .settings import ClientSettings, ServerSettings  # noqa: E402
from .static import static_root  # noqa: E402


@implementer(IPushProducer)
class _WritabilitySignal:
    """Registered on a connection's transport as a streaming producer: the
    transport pauses it past its high-water mark and resumes it once drained."""

    def __init__(self, connection: Any):
        self.connection = connection

    def pauseProducing(self) -> None:
        self.connection._transport_paused()

    def resumeProducing(self) -> None:
        self.connection._transport_resumed()

    def stopProducing(self) -> None:
        pass


class _TwistedConnection:
    """Flow control on a Twisted transport (shared by both sides' protocol classes)."""

    def _connectionMade(self) -> None:
        super()._connectionMade()
        signal = _WritabilitySignal(self)
        try:
            self.transport.registerProducer(signal, True)
        except RuntimeError:
            # twisted.web's HTTPChannel registered itself before the upgrade
            # handed the transport over; it no longer produces anything here.
            self.transport.unregisterProducer()
            self.transport.registerProducer(signal, True)

    def sendData(self, data: bytes, sync: bool = False, chopsize: int | None = None) -> None:
        if self._writing_paused:
            self._paused_bytes += len(data)
        super().sendData(data, sync, chopsize)

    def _closeConnection(self, abort: bool = False) -> None:
        # A transport whose streaming producer is paused never finishes a
        # loseConnection (it waits for the producer): we produce nothing more.
        self.transport.unregisterProducer()
        super()._closeConnection(abort)

    def pause_reading(self) -> None:
        """Stop reading from the socket (backpressure on the peer)."""
        self.transport.pauseProducing()

    def resume_reading(self) -> None:
        self.transport.resumeProducing()


class _ReactorTimers:
    """Connection timers on the factory's own reactor (shared by both sides' factories).

    Not through txaio: its Twisted ``with_config(loop=...)`` ignores the
    reactor it is given (txaio assumes one global reactor), so a timer built
    that way imports and runs on ``twisted.internet.reactor``, and building
    one raises when txaio already holds another reactor.
    """

    def _timer_clock(self) -> tuple[Any, Any]:
        return self.reactor.seconds, self.reactor.callLater


class ServerProtocol(_TwistedConnection, ServerProtocolMixin, _ServerProtocol):
    """A wskit server connection on Twisted; subclass it in Autobahn's style if you like."""

    log = txaio.make_logger()  # events under wskit's namespace, not Autobahn's


class ServerFactory(_ReactorTimers, ServerFactoryMixin, _ServerFactory):
    """Autobahn server factory configured from a :class:`WebSocketApp` (or settings).

    Every timer of its connections runs on ``reactor`` (the global reactor if None).
    """

    protocol = ServerProtocol

    def __init__(self, app: WebSocketApp | None = None, *, settings: ServerSettings | None = None,
                 protocol: type | None = None, reactor: Any = None):
        super().__init__(app, settings=settings, protocol=protocol, reactor=reactor)


class ClientProtocol(_TwistedConnection, ClientProtocolMixin, _ClientProtocol):
    """A wskit client connection on Twisted."""

    log = txaio.make_logger()  # events under wskit's namespace, not Autobahn's


class ClientFactory(_ReactorTimers, ClientFactoryMixin, _ClientFactory):
    protocol = ClientProtocol

    def __init__(self, url: str, settings: ClientSettings | None = None, handler_factory: Any = None,
                 protocol: type | None = None, reactor: Any = None):
        super().__init__(url, settings, handler_factory, protocol, reactor=reactor)


# -- twisted.web ---------------------------------------------------------------


def websocket_resource(app: WebSocketApp | None = None, *, settings: ServerSettings | None = None,
                       protocol: type | None = None, reactor: Any = None) -> WebSocketResource:
    """A twisted.web Resource serving wskit's WebSocket endpoint; mount it anywhere.

    Example::

        root = Resource()
        root.putChild(b"live", wskit.twisted.websocket_resource(settings=ServerSettings()))
        reactor.listenTCP(8080, Site(root))
    """
    factory = ServerFactory(app, settings=settings, protocol=protocol, reactor=reactor)
    factory.check_path = False  # the Site already routed the request here
    return WebSocketResource(factory)


def build_site(app: WebSocketApp, protocol: type | None = None, reactor: Any = None) -> server.Site:
    """HTTP and WebSocket on one port: the demo page at ``/``, the endpoint at ``settings.path``."""
    settings = app.settings
    ws = websocket_resource(app, protocol=protocol, reactor=reactor)
    root: resource.Resource
    if settings.serve_static:
        root = static.File(static_root(settings.static_dir))
    else:
        root = resource.Resource()
    segments = [s.encode() for s in settings.path.strip("/").split("/") if s]
    if not segments:
        raise ValueError("the WebSocket path must not be '/' when serving a Site")
    parent = root
    for segment in segments[:-1]:
        child = resource.Resource()
        parent.putChild(segment, child)
        parent = child
    parent.putChild(segments[-1], ws)
    # Until a request has arrived, the HTTP idle timeout is the opening-handshake
    # timeout: a client that connects and says nothing is dropped just as fast.
    site = server.Site(root, timeout=settings.timeouts.open_handshake or None, reactor=reactor)
    site.noisy = False
    return site


def server_endpoint(reactor: Any, settings: ServerSettings) -> Any:
    """The Twisted server endpoint ``settings`` describe (``settings.endpoint`` wins).

    Raises :class:`wskit.ListenError` for a bad endpoint string or TLS files
    that cannot be loaded.
    """
    quote = endpoints.quoteStringArgument
    check_tls_files(settings)
    if settings.endpoint:
        description = settings.endpoint
    elif settings.tls.enabled:
        description = (f"ssl:port={settings.port}:interface={quote(settings.host)}"
                       f":privateKey={quote(settings.tls.key)}:certKey={quote(settings.tls.cert)}")
    else:
        description = f"tcp:port={settings.port}:interface={quote(settings.host)}"
    try:
        return endpoints.serverFromString(reactor, description)
    except Exception as exc:
        raise ListenError(describe_listen_error(exc, settings)) from None


class WebSocketService(service.Service):
    """An ``IService`` that listens for WebSocket (and demo-page HTTP) connections.

    Add it to your ``MultiService`` or ``.tac`` application::

        application = service.Application("chat")
        wskit.twisted.WebSocketService(ServerSettings(port=9000)).setServiceParent(application)

    It binds in ``privilegedStartService``, as Twisted's own
    ``StreamServerEndpointService`` does, so ``twistd -u``/``-g`` can bind a
    port below 1024 as root and serve after dropping privileges. On stop it
    stops listening and closes open connections with 1001.

    With ``settings.metrics`` on, it records metrics (:mod:`wskit.metrics`) and
    serves them on ``metrics_port`` too.
    """

    def __init__(self, settings: ServerSettings | None = None, app: WebSocketApp | None = None,
                 reactor: Any = None, protocol: type | None = None, endpoint: Any = None):
        self.app = app or WebSocketApp(settings)
        self._reactor = reactor
        self.site = build_site(self.app, protocol=protocol, reactor=reactor)
        self.endpoint = endpoint
        self.port: Any = None
        self.metrics_port: Any = None
        self._listening: defer.Deferred | None = None
        self._listen_result: Any = None
        self._waiting: list[defer.Deferred] = []

    @property
    def settings(self) -> ServerSettings:
        return self.app.settings

    def _get_reactor(self) -> Any:
        if self._reactor is None:
            from twisted.internet import reactor

            self._reactor = reactor
        return self._reactor

    def privilegedStartService(self) -> None:
        super().privilegedStartService()
        self._listen()

    def startService(self) -> None:
        super().startService()
        self._listen()

    def _listen(self) -> None:
        if self._listening is not None:
            return
        try:
            if self.settings.metrics.enabled:
                metrics.enable()
            if self.endpoint is None:
                self.endpoint = server_endpoint(self._get_reactor(), self.settings)
            self._listening = self.endpoint.listen(self.site)
        except Exception as exc:
            self._listening = defer.fail(exc)
        self._listening.addCallback(self._serve_metrics)
        self._listening.addCallbacks(self._bound, self._failed)

    def _serve_metrics(self, port: Any) -> Any:
        if not self.settings.metrics.enabled:
            return port

        def serving(metrics_port: Any) -> Any:
            self.metrics_port = metrics_port
            return port

        def failed(fail: Any) -> Any:
            port.stopListening()
            return fail

        d = metrics_http.listen_twisted(self.settings.metrics, self._get_reactor())
        return d.addCallbacks(serving, failed)

    def _bound(self, port: Any) -> Any:
        self.port = port
        self.app.start()
        self._settle(port)
        return port

    def _failed(self, fail: Any) -> None:
        if not fail.check(ListenError):
            fail = Failure(ListenError(describe_listen_error(fail.value, self.settings)))
        self._settle(fail)
        return None

    def _settle(self, result: Any) -> None:
        self._listen_result = result
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.callback(result)  # a Failure result errbacks

    def when_listening(self) -> defer.Deferred:
        """A Deferred that fires with the listening port, or fails with
        :class:`wskit.ListenError` (one line saying where and why)."""
        if self._listen_result is not None:
            d: defer.Deferred = defer.Deferred()
            d.callback(self._listen_result)
            return d
        d = defer.Deferred()
        self._waiting.append(d)
        return d

    def stopService(self) -> defer.Deferred:
        """Stop listening, close every connection with 1001 and wait for the closing
        handshakes (at most the close-handshake timeout) so the close frames reach peers."""
        super().stopService()
        self.app.stop()
        if self.metrics_port is not None:
            self.metrics_port.stopListening()
        stopped = defer.maybeDeferred(self.port.stopListening) if self.port is not None else defer.succeed(None)
        closing = self.app.close_all()
        if not closing:
            return stopped
        done = defer.DeferredList([stopped, *closing], consumeErrors=True)
        timer = self._get_reactor().callLater(closing_deadline(self.settings), done.cancel)
        done.addBoth(lambda _: timer.cancel() if timer.active() else None)
        return done


def listen(settings: ServerSettings | None = None, reactor: Any = None, app: WebSocketApp | None = None,
           protocol: type | None = None) -> defer.Deferred:
    """Start listening; the Deferred fires with the ``WebSocketService`` once bound
    (or fails with :class:`wskit.ListenError`)."""
    svc = WebSocketService(settings, app=app, reactor=reactor, protocol=protocol)
    svc.startService()
    d = svc.when_listening()
    d.addCallback(lambda _port: svc)
    return d


# -- client --------------------------------------------------------------------


def client_endpoint(reactor: Any, url: str, ca_file: str | None = None):
    host, port, secure = split_ws_url(url)
    if not secure:
        return endpoints.HostnameEndpoint(reactor, host, port)
    from twisted.internet import ssl

    if ca_file:
        with open(ca_file, "rb") as f:
            trust = ssl.Certificate.loadPEM(f.read())
        options = ssl.optionsForClientTLS(host, trustRoot=trust)
    else:
        options = ssl.optionsForClientTLS(host)
    return endpoints.wrapClientTLS(options, endpoints.HostnameEndpoint(reactor, host, port))


def connect(url: str, settings: ClientSettings | None = None, handler_factory: Any = None,
            reactor: Any = None, protocol: type | None = None) -> defer.Deferred:
    """Open a client connection; fires with the open ``ClientProtocol``.

    Fails with :class:`wskit.HandshakeError` when the server refuses, or the
    connection error (refused, DNS, TLS) when TCP/TLS fails.
    """
    if reactor is None:
        from twisted.internet import reactor
    factory = ClientFactory(url, settings, handler_factory, protocol=protocol, reactor=reactor)
    endpoint = client_endpoint(reactor, url, factory.wskit_settings.ca_file)
    d = endpoint.connect(factory)
    d.addCallback(lambda proto: proto.is_open.addCallback(lambda _: proto))
    return d


__all__ = [
    "ClientFactory",
    "ClientProtocol",
    "ServerFactory",
    "ServerProtocol",
    "WebSocketService",
    "build_site",
    "connect",
    "listen",
    "server_endpoint",
    "websocket_resource",
]
