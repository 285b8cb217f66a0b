"""Twisted backend: concrete Autobahn classes, the Site, the IService, connect().

Importing this module selects Twisted for txaio. It does not import
``twisted.internet.reactor``: every function takes the reactor as an argument
and only falls back to the global one when called without it.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

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
from twisted.web import resource, server, static  # noqa: E402

from .app import WebSocketApp  # noqa: E402
from .protocol import (  # noqa: E402
    ClientFactoryMixin,
    ClientProtocolMixin,
    ServerFactoryMixin,
    ServerProtocolMixin,
    factory_url,
)
from .settings import ClientSettings, ServerSettings  # noqa: E402
from .static import static_root  # noqa: E402

BACKEND = "twisted"


class ServerProtocol(ServerProtocolMixin, _ServerProtocol):
    """A wskit server connection on Twisted; subclass it in Autobahn's style if you like."""

    log = txaio.make_logger()  # events under wskit's namespace, not Autobahn's


class ServerFactory(ServerFactoryMixin, _ServerFactory):
    """Autobahn server factory configured from a :class:`WebSocketApp`."""

    protocol = ServerProtocol

    def __init__(self, app: WebSocketApp | None = None, *, settings: ServerSettings | None = None,
                 protocol: type | None = None):
        app = app or WebSocketApp(settings)
        super().__init__(url=factory_url(app.settings))
        if protocol is not None:
            self.protocol = protocol
        self._configure(app)


class ClientProtocol(ClientProtocolMixin, _ClientProtocol):
    """A wskit client connection on Twisted."""

    log = txaio.make_logger()  # events under wskit's namespace, not Autobahn's


class ClientFactory(ClientFactoryMixin, _ClientFactory):
    protocol = ClientProtocol

    def __init__(self, url: str, settings: ClientSettings | None = None, handler_factory: Any = None,
                 protocol: type | None = None):
        settings = (settings or ClientSettings()).validate()
        headers = dict(settings.headers)
        super().__init__(
            url=url,
            protocols=list(settings.subprotocols) or None,
            origin=settings.origin,
            useragent=settings.user_agent,
            headers=headers or None,
        )
        if protocol is not None:
            self.protocol = protocol
        self._configure(settings, handler_factory)


# -- twisted.web ---------------------------------------------------------------


def websocket_resource(app: WebSocketApp | None = None, *, settings: ServerSettings | None = None,
                       protocol: type | None = None) -> WebSocketResource:
    """A twisted.web Resource serving wskit's WebSocket endpoint; mount it anywhere.

    Example::

        root = Resource()
        root.putChild(b"live", wskit.twisted.websocket_resource(settings=ServerSettings()))
        reactor.listenTCP(8080, Site(root))
    """
    factory = ServerFactory(app, settings=settings, protocol=protocol)
    factory.check_path = False  # the Site already routed the request here
    return WebSocketResource(factory)


def build_site(app: WebSocketApp, protocol: type | None = None) -> server.Site:
    """HTTP and WebSocket on one port: the demo page at ``/``, the endpoint at ``settings.path``."""
    settings = app.settings
    ws = websocket_resource(app, protocol=protocol)
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
    site = server.Site(root, timeout=settings.timeouts.open_handshake or None)
    site.noisy = False
    site.wskit_app = app
    site.wskit_factory = ws._factory
    return site


def endpoint_description(settings: ServerSettings) -> str:
    """The Twisted server endpoint string for ``settings`` (``--endpoint`` wins)."""
    if settings.endpoint:
        return settings.endpoint
    host = settings.host.replace(":", "\\:")
    if settings.tls.enabled:
        key = settings.tls.key.replace(":", "\\:")
        cert = settings.tls.cert.replace(":", "\\:")
        return f"ssl:port={settings.port}:interface={host}:privateKey={key}:certKey={cert}"
    return f"tcp:port={settings.port}:interface={host}"


class WebSocketService(service.Service):
    """An ``IService`` that listens for WebSocket (and demo-page HTTP) connections.

    Add it to your ``MultiService`` or ``.tac`` application::

        application = service.Application("chat")
        wskit.twisted.WebSocketService(ServerSettings(port=9000)).setServiceParent(application)

    On stop it stops listening and closes open connections with 1001.
    """

    def __init__(self, settings: ServerSettings | None = None, app: WebSocketApp | None = None,
                 reactor: Any = None, protocol: type | None = None):
        self.app = app or WebSocketApp(settings)
        self.site = build_site(self.app, protocol=protocol)
        self._reactor = reactor
        self.port: Any = None
        self._listen_result: Any = None
        self._waiting: list[defer.Deferred] = []

    @property
    def settings(self) -> ServerSettings:
        return self.app.settings

    def _get_reactor(self):
        if self._reactor is None:
            from twisted.internet import reactor

            self._reactor = reactor
        return self._reactor

    def startService(self) -> defer.Deferred:
        super().startService()
        endpoint = endpoints.serverFromString(self._get_reactor(), endpoint_description(self.settings))
        d = endpoint.listen(self.site)

        def listening(port):
            self.port = port
            self.app.start()
            self._settle(port)
            return port

        def failed(fail):
            self._settle(fail)
            return fail

        d.addCallbacks(listening, failed)
        return d

    def _settle(self, result: Any) -> None:
        self._listen_result = result
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.callback(result)  # a Failure result errbacks

    def when_listening(self) -> defer.Deferred:
        """A Deferred that fires with the listening port (or the failure to listen)."""
        if self._listen_result is not None:
            return defer.succeed(self._listen_result)
        d: defer.Deferred = defer.Deferred()
        self._waiting.append(d)
        return d

    def stopService(self) -> defer.Deferred:
        """Stop listening, close every connection with 1001 and wait for the closing
        handshakes (at most the close-handshake timeout) so the close frames reach peers."""
        super().stopService()
        self.app.stop()
        stopped = defer.maybeDeferred(self.port.stopListening) if self.port is not None else defer.succeed(None)
        closing = self.app.close_all()
        if not closing:
            return stopped
        done = defer.DeferredList([stopped, *closing], consumeErrors=True)
        reactor = self._get_reactor()
        timer = reactor.callLater(self.settings.timeouts.close_handshake + 0.5, done.cancel)
        done.addBoth(lambda _: timer.cancel() if timer.active() else None)
        return done


def listen(settings: ServerSettings | None = None, reactor: Any = None, app: WebSocketApp | None = None,
           protocol: type | None = None) -> defer.Deferred:
    """Start listening; the Deferred fires with the ``WebSocketService`` once bound."""
    svc = WebSocketService(settings, app=app, reactor=reactor, protocol=protocol)
    d = svc.startService()
    d.addCallback(lambda _port: svc)
    return d


# -- client --------------------------------------------------------------------


def client_endpoint(reactor: Any, url: str, ca_file: str | None = None):
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss"):
        raise ValueError(f"not a WebSocket URL: {url!r} (expected ws:// or wss://)")
    if not parts.hostname:
        raise ValueError(f"no host in WebSocket URL {url!r}")
    secure = parts.scheme == "wss"
    port = parts.port or (443 if secure else 80)
    if not secure:
        return endpoints.HostnameEndpoint(reactor, parts.hostname, port)
    from twisted.internet import ssl

    if ca_file:
        with open(ca_file, "rb") as f:
            trust = ssl.Certificate.loadPEM(f.read())
        options = ssl.optionsForClientTLS(parts.hostname, trustRoot=trust)
    else:
        options = ssl.optionsForClientTLS(parts.hostname)
    return endpoints.wrapClientTLS(options, endpoints.HostnameEndpoint(reactor, parts.hostname, port))


def connect(url: str, settings: ClientSettings | None = None, handler_factory: Any = None,
            reactor: Any = None, protocol: type | None = None) -> defer.Deferred:
    """Open a client connection; fires with the open ``ClientProtocol``.

    Fails with :class:`wskit.HandshakeError` when the server refuses, or the
    connection error (refused, DNS, TLS) when TCP/TLS fails.
    """
    if reactor is None:
        from twisted.internet import reactor
    settings = (settings or ClientSettings()).validate()
    factory = ClientFactory(url, settings, handler_factory, protocol=protocol)
    endpoint = client_endpoint(reactor, url, settings.ca_file)
    d = endpoint.connect(factory)
    d.addCallback(lambda proto: proto.opened)
    return d


__all__ = [
    "BACKEND",
    "ClientFactory",
    "ClientProtocol",
    "ServerFactory",
    "ServerProtocol",
    "WebSocketService",
    "build_site",
    "connect",
    "endpoint_description",
    "listen",
    "websocket_resource",
]
