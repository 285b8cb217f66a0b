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
from autobahn.twisted.util import peer2str  # noqa: E402
from autobahn.twisted.websocket import (  # noqa: E402
    WebSocketClientFactory as _ClientFactory,
    WebSocketClientProtocol as _ClientProtocol,
    WebSocketServerFactory as _ServerFactory,
    WebSocketServerProtocol as _ServerProtocol,
)
from twisted.application import service  # noqa: E402
from twisted.internet import defer, endpoints, tcp  # noqa: E402
from twisted.internet.interfaces import IPushProducer  # noqa: E402
from twisted.protocols.policies import ProtocolWrapper  # noqa: E402
from twisted.python.failure import Failure  # noqa: E402
from twisted.web import http, resource, server, static  # noqa: E402
from zope.interface import implementer  # noqa: E402

from . import metrics, metrics_http  # noqa: E402
from .app import WebSocketApp  # noqa: E402
from .auth import redact_query_token  # noqa: E402
from .errors import ListenError, check_tls_files, describe_listen_error  # noqa: E402
from .handshake import (  # noqa: E402
    MAX_BODY_CHARACTERS,
    MAX_REASON_CHARACTERS,
    Refusal,
    RequestHead,
    body_refusal,
    one_line,
    read_request_head,
    refusal_response,
    request_refusal,
    too_large,
)
from .protocol import (  # noqa: E402
    ABORT_GRACE_SECONDS,
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

    # The socket of a plain TCP transport, written to directly (see _write_out).
    _socket: Any = None

    def _connectionMade(self) -> None:
        super()._connectionMade()
        if isinstance(self.transport, tcp.Connection):  # not TLS, not an in-memory transport
            self._socket = self.transport.socket
        signal = _WritabilitySignal(self)
        try:
            self.transport.registerProducer(signal, True)
        except RuntimeError:
            # twisted.web's HTTPChannel registered itself before the upgrade
            # handed the transport over; it no longer produces anything here.
            self.transport.unregisterProducer()
            self.transport.registerProducer(signal, True)

    def dataReceived(self, data: bytes) -> None:
        # Autobahn's, less its debug line (whose arguments are built on every read).
        self._dataReceived(data)

    def _write_out(self, data: bytes) -> None:
        # A Twisted transport queues every write for the next reactor turn, asking
        # epoll to watch for writability and then to stop: two epoll_ctl calls and
        # a poll per reply. When nothing is queued, send now, as asyncio's
        # transports do; what the socket does not take is queued as before (and a
        # socket error is left to the transport, which reports it as usual).
        transport, sock = self.transport, self._socket
        if (sock is not None and not transport._tempDataLen and not transport.dataBuffer
                and transport.connected and not transport.disconnecting and not transport._writeDisconnected):
            try:
                sent = sock.send(data)
            except OSError:
                sent = 0
            if sent == len(data):
                return
            data = data[sent:]
        transport.write(data)

    def _closeConnection(self, abort: bool = False) -> None:
        # A transport whose streaming producer is paused never finishes a
        # loseConnection (it waits for the producer): we produce nothing more.
        self.transport.unregisterProducer()
        super()._closeConnection(abort)

    def _pause_transport_reading(self) -> None:
        self.transport.pauseProducing()

    def _resume_transport_reading(self) -> None:
        self.transport.resumeProducing()


class _ReactorTimers:
    """Connection timers on the factory's own reactor (shared by both sides' factories).

    Not through txaio: its Twisted ``with_config(loop=...)`` ignores the
    reactor it is given (txaio assumes one global reactor), so a timer built
    that way imports and runs on ``twisted.internet.reactor``, and building
    one raises when txaio already holds another reactor.
    """

    def _call_soon(self, fun: Any) -> None:
        # Run at the start of the next reactor iteration: after the callbacks of
        # this poll's events, before the next poll.
        self.reactor.callLater(0, fun)

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

_log = txaio.make_logger()

# twisted.web's limits when wskit's is 0 (no limit).
_UNLIMITED = 1 << 62


def _log_refusal(peer: str, refusal: Refusal, origin: str | None = None, path: str | None = None) -> None:
    # The same structured line as ServerProtocolMixin's, for refusals made before the handover.
    _log.info(
        "wskit: refused peer={peer} status={status} origin={origin} path={path}: {reason}",
        peer=peer,
        status=refusal.status,
        origin=origin or "-",
        path=path or "-",
        reason=refusal.reason,
        wskit_event="refused",
    )


def _is_websocket_upgrade(request: Any) -> bool:
    upgrade = (request.getHeader(b"upgrade") or b"").decode("iso-8859-1")
    return any(token.strip().lower() == "websocket" for token in upgrade.split(","))


class _Refused(resource.Resource):
    """Answers any request with a refusal: the reason in the status line and a text body."""

    isLeaf = True

    def __init__(self, refusal: Refusal):
        super().__init__()
        self.refusal = refusal

    def render(self, request: Any) -> bytes:
        refusal = self.refusal
        _log_refusal(peer2str(request.transport) if request.transport else "-", refusal,
                     (request.getHeader(b"origin") or b"").decode("iso-8859-1"),
                     request.uri.decode("iso-8859-1"))
        request.setResponseCode(refusal.status, one_line(refusal.reason, MAX_REASON_CHARACTERS).encode("utf-8"))
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        for name, value in refusal.headers:
            request.setHeader(name.encode(), value.encode())
        return (one_line(refusal.reason, MAX_BODY_CHARACTERS) + "\n").encode("utf-8")


class _WebSocketResource(WebSocketResource):
    """Autobahn's WebSocketResource, refusing what it would pass on wrongly.

    Autobahn rebuilds the request for the WebSocket protocol as HTTP/1.1,
    whatever version the client spoke (RFC 6455 requires 1.1: 505), and the
    protocol would start its opening-handshake timeout afresh: in wskit's own
    Site the connection's deadline counts from when it connected.
    """

    def render(self, request: Any) -> Any:
        if request.clientproto != b"HTTP/1.1" and _is_websocket_upgrade(request):
            version = request.clientproto.decode("iso-8859-1")
            return _Refused(Refusal(505, f"a WebSocket handshake needs HTTP/1.1, not {version}")).render(request)
        factory = self._factory
        factory.takeover_deadline = getattr(request.channel, "handshake_deadline", None)
        try:
            return super().render(request)
        finally:
            factory.takeover_deadline = None


def websocket_resource(app: WebSocketApp | None = None, *, settings: ServerSettings | None = None,
                       protocol: type | None = None, reactor: Any = None) -> WebSocketResource:
    """A twisted.web Resource serving wskit's WebSocket endpoint; mount it anywhere.

    The Site it is mounted in decides where it listens, so any IP address
    passes the Host check; list the names the Site answers to in
    ``ServerSettings.allowed_hosts``. Example::

        root = Resource()
        root.putChild(b"live", wskit.twisted.websocket_resource(
            settings=ServerSettings(allowed_hosts=("chat.example.com",))))
        reactor.listenTCP(8080, Site(root))
    """
    factory = ServerFactory(app, settings=settings, protocol=protocol, reactor=reactor)
    factory.check_path = False  # the Site already routed the request here
    factory.host_policy = factory.app.host_policy.with_unknown_bind()
    return _WebSocketResource(factory)


class _LimitedHTTPChannel(http.HTTPChannel):
    """twisted.web's HTTP/1.1 channel with wskit's request limits and handshake deadline.

    Each request head is screened with :func:`wskit.handshake.read_request_head`
    before twisted.web parses it, so it is measured and refused exactly as on
    asyncio (431 past ``max_request_size`` or ``max_headers``, 400 for a
    malformed head, 403 for a foreign Host, 505/426 for a WebSocket handshake
    over the wrong HTTP or WebSocket version, 413/411 for a body that would
    take the request past ``max_request_size``, which twisted.web would read
    in full first) instead of twisted.web's bare 400 or a silent close. twisted.web's idle timeout restarts on every byte, so a
    client trickling its request would never be dropped: the connection's
    request must be complete ``open_handshake`` seconds after it connected
    (after the previous response, for the next request on a kept-alive
    connection), on the Site's reactor. A WebSocket handshake gets what is
    left of that time (``handshake_deadline``) when the protocol takes over.
    """

    log = txaio.make_logger()

    def __init__(self, site_settings: ServerSettings, host_policy: Any):
        super().__init__()
        limits = site_settings.limits
        self._max_request_size = limits.max_request_size
        self._max_headers = limits.max_headers
        self.MAX_LENGTH = limits.max_request_size or _UNLIMITED
        self.totalHeadersSize = limits.max_request_size or _UNLIMITED
        self.maxHeaders = limits.max_headers or _UNLIMITED
        self._host_policy = host_policy
        self._server_header = site_settings.server_header
        self._open_timeout = site_settings.timeouts.open_handshake
        self._screening = True  # reading a request head: screen it
        self._head = b""
        self._refused = False
        self._passed_on = False  # twisted.web has read some of this connection
        self._deadline_call: Any = None
        # When (reactor seconds) the current request must be complete.
        self.handshake_deadline: float | None = None

    # -- deadline --------------------------------------------------------------

    def connectionMade(self) -> None:
        super().connectionMade()
        self._arm_deadline()

    def _arm_deadline(self) -> None:
        self._cancel_deadline()
        if self._open_timeout:
            reactor = self.site.reactor
            self.handshake_deadline = reactor.seconds() + self._open_timeout
            self._deadline_call = reactor.callLater(self._open_timeout, self._deadline_passed)

    def _cancel_deadline(self) -> None:
        if self._deadline_call is not None:
            if self._deadline_call.active():
                self._deadline_call.cancel()
            self._deadline_call = None

    def _deadline_passed(self) -> None:
        self._deadline_call = None
        transport = self.transport
        if transport is None:
            return  # handed over to the WebSocket protocol
        if transport.disconnecting:
            # Already closing (a refusal, a timed-out close) and the peer takes nothing.
            transport.abortConnection()
            return
        self.log.warn(
            "dropping connection to peer {peer}: WebSocket opening handshake timeout "
            "(peer did not finish the opening handshake in {timeout} s)",
            peer=peer2str(transport),
            timeout=self._open_timeout,
        )
        # Nothing of ours is waiting to be written: a plain close (FIN), as
        # twisted.web's idle timeout does; an abort if even that does not finish.
        self.loseConnection()
        self._deadline_call = self.site.reactor.callLater(ABORT_GRACE_SECONDS, self._deadline_passed)

    def allContentReceived(self) -> None:
        # The request is complete: a page is served now, or the WebSocket
        # protocol takes over with what is left of handshake_deadline.
        self._cancel_deadline()
        super().allContentReceived()

    def requestDone(self, request: Any) -> None:
        # The next request on this connection is screened and timed afresh
        # (twisted.web replays the bytes it buffered meanwhile through dataReceived).
        self._screening, self._head = True, b""
        self._arm_deadline()
        super().requestDone(request)

    def connectionLost(self, reason: Any) -> None:
        self._cancel_deadline()
        super().connectionLost(reason)

    # -- screening -----------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        if self._refused:
            return
        if self._screening:
            first = not self._passed_on and not self._head  # nothing of this connection read so far
            self._head += data
            head = read_request_head(self._head, self._max_request_size, self._max_headers)
            if head is not None:
                refusal = head if isinstance(head, Refusal) else (
                    request_refusal(head, self._host_policy) or body_refusal(head, self._max_request_size))
                if refusal is not None:
                    path = None if isinstance(head, Refusal) else head.target
                    origin = None if isinstance(head, Refusal) else head.header("origin")
                    self._refuse(refusal, origin, path)
                    return
                self._screening, self._head = False, b""
                if first and self._hand_over(head, data):
                    return
        self._passed_on = True
        super().dataReceived(data)

    # -- the WebSocket endpoint, without twisted.web -------------------------------

    def _hand_over(self, head: RequestHead, data: bytes) -> bool:
        """Give the connection to the WebSocket protocol if ``head`` (all of ``data``
        so far) is an opening handshake for the Site's own endpoint; False otherwise.

        What twisted.web would do for such a request, without it: it would parse
        the head again, build a Request, walk the resources to the endpoint,
        whose Autobahn resource rebuilds the request from its parts for the
        protocol to parse once more (a quarter of accepting a connection). The
        head has passed the same screening (limits, Host, WebSocket version);
        anything else (another path, a page, HTTP/1.0, a body, a head read in
        pieces) goes through twisted.web as before.
        """
        endpoint = getattr(self.site, "websocket_endpoint", None)
        if (endpoint is None or head.method != "GET" or head.version != "HTTP/1.1"
                or not head.is_websocket_upgrade or head.target.partition("?")[0] != endpoint[0]
                or head.header("content-length") not in (None, "0")
                or head.header("transfer-encoding") is not None):
            return False
        transport = self.transport
        factory = endpoint[1]
        proto = factory.buildProtocol(transport.getPeer())
        if proto is None:
            return False
        # This channel lets go of the connection: no idle timeout, no deadline
        # (the protocol gets what is left of it), not the transport's producer.
        self.setTimeout(None)
        self._cancel_deadline()
        self._networkProducer.unregisterProducer()
        self.transport = None
        # As Autobahn's WebSocketResource takes a transport over from twisted.web.
        if isinstance(transport, ProtocolWrapper):  # TLS
            transport.wrappedProtocol = proto
        elif isinstance(transport.protocol, ProtocolWrapper):
            transport.protocol.wrappedProtocol = proto
        else:
            transport.protocol = proto
        factory.takeover_deadline = self.handshake_deadline
        try:
            proto.makeConnection(transport)
        finally:
            factory.takeover_deadline = None
        proto.dataReceived(data)
        return True

    def _refuse(self, refusal: Refusal, origin: str | None = None, path: str | None = None) -> None:
        self._refused, self._screening, self._head = True, False, b""
        _log_refusal(peer2str(self.transport), refusal, origin, path)
        self.transport.write(refusal_response(refusal.status, refusal.reason, refusal.headers, self._server_header))
        self.loseConnection()  # a peer that never reads the answer is aborted at the deadline

    def _respondToBadRequestAndDisconnect(self) -> None:
        # What twisted.web's own parser refuses (a bad Content-Length, say) after screening.
        self._refuse(Refusal(400, "malformed request"))

    def lineLengthExceeded(self, line: bytes) -> None:
        self._refuse(too_large(self._max_request_size))


def _limited_channel(site: _WebSocketSite) -> http._GenericHTTPChannelProtocol:
    # What twisted.web's Site builds (a wrapper that can switch to HTTP/2 after
    # TLS ALPN), around wskit's HTTP/1.1 channel.
    return http._GenericHTTPChannelProtocol(_LimitedHTTPChannel(site.app.settings, site.app.host_policy))


class _WebSocketSite(server.Site):
    """twisted.web's Site with wskit's request limits, handshake deadline and Host check.

    The Host check covers every request, pages as much as WebSocket handshakes
    (a page of a DNS-rebinding attacker must not load either).
    """

    protocol = _limited_channel
    # (path, protocol factory) of the WebSocket endpoint build_site mounted: handshakes
    # for exactly that path go to it without twisted.web (_LimitedHTTPChannel._hand_over).
    websocket_endpoint: tuple[str, Any] | None = None

    def __init__(self, root: Any, app: WebSocketApp, reactor: Any = None):
        # Between requests of a kept-alive connection, twisted.web's idle timeout applies.
        super().__init__(root, timeout=app.settings.timeouts.open_handshake or None, reactor=reactor,
                         logFormatter=_access_log_line)
        self.app = app
        self.noisy = False

    def getResourceFor(self, request: Any) -> Any:
        host = request.getHeader(b"host")
        policy = self.app.host_policy
        if host is not None and not policy.allows(host.decode("iso-8859-1")):
            return _Refused(Refusal(403, policy.reason(host.decode("iso-8859-1"))))
        return super().getResourceFor(request)


def build_site(app: WebSocketApp, protocol: type | None = None, reactor: Any = None) -> server.Site:
    """HTTP and WebSocket on one port: the demo page at ``/``, the endpoint at ``settings.path``."""
    settings = app.settings
    ws = websocket_resource(app, protocol=protocol, reactor=reactor)
    ws._factory.host_policy = app.host_policy  # this Site listens where the settings say
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
    site = _WebSocketSite(root, app, reactor=reactor)
    site.websocket_endpoint = (settings.path, ws._factory)
    return site


def _access_log_line(timestamp: str, request: Any) -> str:
    # Twisted's combined log format, without the value of a ?token= (docs/security.md).
    return redact_query_token(http.combinedLogFormatter(timestamp, request))


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
        """Stop listening, close every connection with 1001 and wait until each is gone
        and its close line logged, so the close frames reach peers and no line is lost
        when the reactor stops.

        A peer that has not answered by the close-handshake timeout is dropped
        by then; whatever is left at :func:`closing_deadline` is aborted and
        waited for a moment more.
        """
        super().stopService()
        self.app.stop()
        if self.metrics_port is not None:
            self.metrics_port.stopListening()
        stopped = defer.maybeDeferred(self.port.stopListening) if self.port is not None else defer.succeed(None)
        gone = self.app.close_all()
        if not gone:
            return stopped
        reactor = self._get_reactor()
        done = defer.DeferredList([stopped, *gone], consumeErrors=True)
        deadline = closing_deadline(self.settings)
        timers = [reactor.callLater(deadline, self.app.abort_all),
                  reactor.callLater(deadline + ABORT_GRACE_SECONDS, done.cancel)]

        def cancel_timers(result: Any) -> Any:
            for timer in timers:
                if timer.active():
                    timer.cancel()
            return result

        done.addBoth(cancel_timers)
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
