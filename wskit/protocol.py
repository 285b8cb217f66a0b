"""Backend-neutral protocol and factory mixins.

Autobahn's own pattern: generic logic here, combined with
``autobahn.twisted.websocket`` or ``autobahn.asyncio.websocket`` classes in the
thin adapters (:mod:`wskit.twisted`, :mod:`wskit.asyncio`). Nothing here
imports a reactor or an event loop.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

import txaio
from autobahn.util import encode_truncate
from autobahn.websocket.compress import PERMESSAGE_COMPRESSION_EXTENSION
from autobahn.websocket.types import ConnectionDeny

from .compression import (
    DEFLATE,
    ClientCompression,
    DeflateParameterError,
    ServerCompression,
    describe_extensions,
    extension_names,
    make_client_accept,
    make_server_accept,
    tune_extension,
)
from .logs import log_failure
from .negotiation import NegotiationError
from .settings import ClientSettings, ServerSettings
from .static import content_type, resolve_static_file, static_root

CLOSE_INTERNAL_ERROR = 1011
ALLOWED_CLOSE_CODES = frozenset({1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011})


class ConnectionMixin:
    """What server and client connections share: the :class:`wskit.Connection` API."""

    handler: Any = None
    # The subprotocol actually served: the negotiated name, or the default's
    # name when the client offered none (then no Sec-WebSocket-Protocol is sent).
    served_subprotocol: str | None = None
    _compression_settings = None
    _compress_threshold = 0
    # The permessage-deflate negotiation's outcome (wskit.deflate.DeflateAgreement), once negotiated.
    _deflate_agreement = None

    # -- Connection API ------------------------------------------------

    @property
    def subprotocol(self) -> str | None:
        return self.websocket_protocol_in_use

    @property
    def extensions(self) -> list[str]:
        return extension_names(self.websocket_extensions_in_use or [])

    @property
    def compression(self) -> dict[str, Any] | None:
        """Negotiated compression parameters, or None when messages go uncompressed."""
        described = describe_extensions(self.websocket_extensions_in_use or [])
        return described[0] if described else None

    def send_text(self, text: str) -> None:
        self.sendMessage(text.encode("utf-8"), False)

    def send_binary(self, data: bytes) -> None:
        self.sendMessage(bytes(data), True)

    def send_prepared(self, prepared: Any) -> None:
        self.sendPreparedMessage(prepared)

    def close(self, code: int = 1000, reason: str | None = None) -> None:
        """Start the closing handshake.

        Unlike Autobahn's ``sendClose`` (1000 or 3000-4999 only), endpoints may
        send the RFC 6455 codes that describe application decisions too:
        1001 going away, 1003 unsupported data, 1008 policy violation,
        1009 too big, 1011 internal error.
        """
        if code not in ALLOWED_CLOSE_CODES and not 3000 <= code <= 4999:
            raise ValueError(f"close code {code} may not be sent (RFC 6455 7.4)")
        if self.state != self.STATE_OPEN:
            return
        reason_utf8 = encode_truncate(reason, 123) if reason else None
        self.sendCloseFrame(code=code, reasonUtf8=reason_utf8, isReply=False)

    @property
    def is_connected(self) -> bool:
        return self.state == self.STATE_OPEN

    # -- Autobahn hooks ------------------------------------------------

    def sendMessage(self, payload, isBinary=False, fragmentSize=None, sync=False, doNotCompress=False):
        # Tiny messages grow under deflate and cost a compressor call each.
        if len(payload) < self._compress_threshold:
            doNotCompress = True
        super().sendMessage(payload, isBinary, fragmentSize, sync, doNotCompress)

    def sendPreparedMessage(self, preparedMsg) -> None:
        if self.state != self.STATE_OPEN:
            return
        super().sendPreparedMessage(preparedMsg)

    def _onOpen(self) -> None:
        if self._perMessageCompress is not None and self._compression_settings is not None:
            tune_extension(self._perMessageCompress, self._compression_settings, self._deflate_agreement)
        super()._onOpen()

    def _call_handler(self, method: str, *args: Any) -> None:
        handler = self.handler
        if handler is None:
            return
        try:
            result = getattr(handler, method)(*args)
        except Exception:
            self._handler_failed(txaio.create_failure(), method)
            return
        if result is not None:
            future = txaio.as_future(lambda: result)
            txaio.add_callbacks(future, None, lambda fail: self._handler_failed(fail, method))

    def _handler_failed(self, fail: Any, method: str = "handler") -> None:
        log_failure(
            self.log,
            fail,
            "wskit: {subprotocol} {method} failed for {peer}: {log_failure.value}",
            subprotocol=self.subprotocol,
            method=method,
            peer=self.peer,
        )
        self.close(CLOSE_INTERNAL_ERROR, "internal error")
        return None

    def _subprotocol_label(self) -> str:
        if self.subprotocol:
            return self.subprotocol
        if self.served_subprotocol:
            return f"{self.served_subprotocol}(default)"
        return "none"

    def _log_open(self) -> None:
        self.log.info(
            "wskit: open peer={peer} subprotocol={subprotocol} extensions={extensions}",
            peer=self.peer,
            subprotocol=self._subprotocol_label(),
            extensions=",".join(self.extensions) or "none",
            wskit_event="open",
        )

    def _log_close(self, was_clean: bool, code: int | None, reason: str | None) -> None:
        self.log.info(
            "wskit: close peer={peer} subprotocol={subprotocol} extensions={extensions} "
            "code={code} clean={clean}",
            peer=self.peer,
            subprotocol=self._subprotocol_label(),
            extensions=",".join(self.extensions) or "none",
            code=code,
            clean=was_clean,
            reason=reason,
            wskit_event="close",
        )


class ServerProtocolMixin(ConnectionMixin):
    """Server side: path and origin checks, subprotocol routing, limits from settings.

    Subclass the concrete class (``wskit.twisted.ServerProtocol`` or
    ``wskit.asyncio.ServerProtocol``) in Autobahn's native style and call
    ``super()`` where you want wskit's behaviour; or write a
    :class:`wskit.Handler` and let the registry route to it.
    """

    app: Any = None

    def _connectionMade(self) -> None:
        self.app = self.factory.app
        self._compression_settings = self.app.settings.compression
        self._compress_threshold = self._compression_settings.threshold
        super()._connectionMade()

    def onConnect(self, request):
        try:
            return self._accept_handshake(request)
        except ConnectionDeny as deny:
            # One structured line per refusal, so operators see who was turned away and why.
            self.log.info(
                "wskit: refused peer={peer} status={status} origin={origin} path={path}: {reason}",
                peer=self.peer,
                status=deny.code,
                origin=request.origin or "-",
                path=request.path,
                reason=deny.reason,
                wskit_event="refused",
            )
            raise

    def _accept_handshake(self, request):
        settings: ServerSettings = self.app.settings
        if self.factory.check_path and urlsplit(request.path).path != settings.path:
            raise ConnectionDeny(404, f"no WebSocket endpoint at {request.path} (try {settings.path})")
        self.app.origin_policy.check(
            request.origin, request.headers.get("host"), is_secure=self.factory.isSecure
        )
        try:
            name, entry = self.app.registry.select(
                request.protocols, settings.default_subprotocol, settings.prefer
            )
        except NegotiationError as exc:
            raise ConnectionDeny(exc.status, str(exc)) from None
        self.served_subprotocol = entry.name
        self.handler = entry.handler(self)
        return name

    def succeedHandshake(self, res):
        # Decide compression from the raw offers before Autobahn parses them:
        # Autobahn answers an offer it cannot parse (a window of 8, an unknown
        # or repeated parameter) with HTTP 400, where RFC 7692 says to decline
        # that offer and try the next. A compression parameter never refuses
        # a handshake.
        policy = self.perMessageCompressionAccept
        if isinstance(policy, ServerCompression):
            choice = policy.choose(self.websocket_extensions or [])
            for reason in choice.declined:
                self.log.debug("wskit: declined compression offer from {peer}: {reason}",
                               peer=self.peer, reason=reason)
            self.websocket_extensions = choice.extensions
            self.perMessageCompressionAccept = choice.accept_offers
            self._deflate_agreement = choice.agreement
        return super().succeedHandshake(res)

    def onOpen(self) -> None:
        self._log_open()
        self.app.connection_opened(self)
        self._call_handler("on_open")

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self._call_handler("on_message", payload, isBinary)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        if self.handler is not None:
            self._log_close(wasClean, code, reason)
            self.app.connection_closed(self)
            self._call_handler("on_close", wasClean, code, reason)
            self.handler = None

    def sendHttpErrorResponse(self, code, reason, responseHeaders=None) -> None:
        # Autobahn answers a refused handshake with a bare status line; say why in a body too.
        reason = " ".join(str(reason).split())
        body = (reason + "\n").encode("utf-8")
        response = (
            f"HTTP/1.1 {code} {reason}\r\n"
            "Content-Type: text/plain; charset=utf-8\r\n"
            f"Content-Length: {len(body)}\r\n"
            "Connection: close\r\n"
        )
        for name, value in responseHeaders or ():
            response += f"{name}: {value}\r\n"
        self.sendData(response.encode("utf-8") + b"\r\n" + body)

    def sendServerStatus(self, redirectUrl=None, redirectAfter=0) -> None:
        # A plain HTTP request (no Upgrade) reached the WebSocket protocol.
        self._answer_plain_http()

    def sendRedirect(self, url: str) -> None:
        # Autobahn would 303-redirect to any ?redirect= URL: an open redirect. Never do that.
        self._answer_plain_http()

    def _answer_plain_http(self) -> None:
        settings = self.app.settings
        path = urlsplit(self.http_request_uri).path
        if self.factory.check_path and settings.serve_static and path != settings.path:
            # Standalone server (asyncio): serve the demo page's files ourselves.
            filename = resolve_static_file(static_root(settings.static_dir), path)
            if filename is not None:
                with open(filename, "rb") as f:
                    body = f.read()
                self._send_http(200, "OK", content_type(filename), body)
            else:
                self._send_http(404, "Not Found", "text/plain; charset=utf-8", b"not found\n")
            return
        names = ", ".join(self.app.registry.names)
        body = (
            f"This is a WebSocket endpoint; connect with a WebSocket client "
            f"(subprotocols: {names}).\n"
        ).encode()
        self._send_http(426, "Upgrade Required", "text/plain; charset=utf-8", body,
                        (("Upgrade", "websocket"),))

    def _send_http(self, code: int, phrase: str, kind: str, body: bytes, headers=()) -> None:
        head = (
            f"HTTP/1.1 {code} {phrase}\r\n"
            f"Server: {self.app.settings.server_header}\r\n"
            f"Content-Type: {kind}\r\n"
            f"Content-Length: {len(body)}\r\n"
            "Connection: close\r\n"
        )
        for name, value in headers:
            head += f"{name}: {value}\r\n"
        self.sendData(head.encode() + b"\r\n" + body)
        # A complete HTTP exchange: Autobahn drops the connection next, and would
        # log every page or asset fetch as an unclean drop (a warning) otherwise.
        self.wasClean = True


def factory_url(settings: ServerSettings) -> str:
    """The URL an Autobahn server factory is created with.

    Autobahn refuses port 0 in a URL, but ``--port 0`` (pick a free port) is
    valid: the factory only uses the URL's scheme (ws/wss), so leave the port out.
    """
    if settings.port:
        return settings.url
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    return f"{settings.scheme}://{host}{settings.path}"


class ServerFactoryMixin:
    """Applies :class:`ServerSettings` to an Autobahn server factory."""

    app: Any = None
    # False when a twisted.web Site has already routed the request to us.
    check_path = True

    def _configure(self, app: Any) -> None:
        settings: ServerSettings = app.settings
        self.app = app
        limits, compression = settings.limits, settings.compression
        self.setProtocolOptions(
            maxConnections=limits.max_connections,
            perMessageCompressionAccept=make_server_accept(compression, limits.max_message_size),
            **common_protocol_options(settings),
        )
        self.server = settings.server_header


def common_protocol_options(settings: ServerSettings | ClientSettings) -> dict[str, Any]:
    """Autobahn factory options both sides take from the same settings."""
    limits, timeouts = settings.limits, settings.timeouts
    return dict(
        maxFramePayloadSize=limits.effective_frame_size,
        maxMessagePayloadSize=limits.max_message_size,
        openHandshakeTimeout=timeouts.open_handshake,
        closeHandshakeTimeout=timeouts.close_handshake,
        autoPingInterval=timeouts.auto_ping_interval,
        autoPingTimeout=timeouts.auto_ping_timeout,
        # Send a close frame with the reason (1002/1007/1009) before dropping.
        failByDrop=False,
    )


class HandshakeError(Exception):
    """The server refused the WebSocket handshake or answered something invalid."""

    def __init__(self, reason: str, status: int | None = None):
        self.reason = reason
        self.status = status
        super().__init__(reason)


class ClientProtocolMixin(ConnectionMixin):
    """Client side: offers from settings, a clear error when the handshake fails.

    ``self.opened`` (a txaio future) resolves with the protocol once open, or
    fails with :class:`HandshakeError`; ``self.closed`` resolves with
    ``(was_clean, code, reason)``.
    """

    handler_factory: Any = None

    def _connectionMade(self) -> None:
        self.opened = txaio.create_future()
        self.closed = txaio.create_future()
        self._handshake_error: HandshakeError | None = None
        self._compression_error: str | None = None
        settings: ClientSettings = self.factory.wskit_settings
        self._compression_settings = settings.compression
        self._compress_threshold = settings.compression.threshold
        super()._connectionMade()

    def _parseExtensionsHeader(self, header, removeQuotes=True):
        # On a client this parses the server's response. Check the compression
        # answer here, against what was offered (wskit.deflate.check_response),
        # before Autobahn's own parser: that one refuses valid windows of 8 and
        # lets through values the offer did not allow.
        extensions = super()._parseExtensionsHeader(header, removeQuotes)
        policy = self.perMessageCompressionAccept
        if not isinstance(policy, ClientCompression):
            return extensions
        for i, (name, params) in enumerate(extensions):
            if name not in PERMESSAGE_COMPRESSION_EXTENSION:
                continue
            try:
                accept = policy.accept_response_params(name, params)
            except Exception as exc:  # DeflateParameterError, or another codec's parser
                detail = str(exc) if isinstance(exc, DeflateParameterError) else f"invalid {name} response: {exc}"
                self._compression_error = (
                    f"invalid compression answer from the server: {detail} "
                    f"(Sec-WebSocket-Extensions: {header.strip()})"
                )
                self.perMessageCompressionAccept = lambda _response: None
            else:
                self._deflate_agreement = getattr(accept, "agreement", None)
                self.perMessageCompressionAccept = lambda _response, accept=accept: accept
            if name == DEFLATE:
                # Autobahn still parses what it is shown: its parameters are handled.
                extensions[i] = (name, {})
            break  # Autobahn refuses a second compression extension itself
        return extensions

    def failHandshake(self, reason: str, code: int = 400, responseHeaders=None) -> None:
        if self._compression_error:
            reason = self._compression_error
        match = re.search(r"upgrade failed \[(\d{3})\]", reason)
        self._handshake_error = HandshakeError(reason, int(match.group(1)) if match else None)
        super().failHandshake(reason)

    def onConnect(self, response) -> None:
        factory = self.handler_factory or self.factory.handler_factory
        if factory is not None:
            self.handler = factory(self)

    def onOpen(self) -> None:
        self._log_open()
        if not txaio.is_called(self.opened):
            txaio.resolve(self.opened, self)
        self._call_handler("on_open")

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self._call_handler("on_message", payload, isBinary)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        if not txaio.is_called(self.opened):
            error = self._handshake_error or HandshakeError(
                self.wasNotCleanReason or reason or "connection closed before the handshake completed"
            )
            txaio.reject(self.opened, error)
        else:
            self._log_close(wasClean, code, reason)
        if not txaio.is_called(self.closed):
            txaio.resolve(self.closed, (wasClean, code, reason))
        self._call_handler("on_close", wasClean, code, reason)
        self.handler = None


class ClientFactoryMixin:
    """Applies :class:`ClientSettings` to an Autobahn client factory."""

    handler_factory: Any = None

    def _configure(self, settings: ClientSettings, handler_factory: Any = None) -> None:
        self.wskit_settings = settings
        self.handler_factory = handler_factory
        limits, compression = settings.limits, settings.compression
        options = common_protocol_options(settings)
        policy = make_client_accept(compression, limits.max_message_size)
        options["perMessageCompressionOffers"] = policy.offers
        options["perMessageCompressionAccept"] = policy
        self.setProtocolOptions(**options)
