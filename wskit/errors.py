"""Every exception wskit raises on purpose, rooted in :class:`WskitError`.

``except wskit.WskitError`` catches anything wskit reports about settings,
handshakes, negotiation, payloads, closed connections and RPC errors; the
classes below say which. Modules that raise them re-export them, so
``wskit.settings.SettingsError`` and ``wskit.SettingsError`` are one class.

::

    WskitError
    ├── SettingsError (also ValueError)    a setting wskit cannot use
    ├── ListenError                        a server could not start listening
    ├── HandshakeError                     the opening handshake failed (client side)
    ├── NegotiationError                   no subprotocol fits (server side; has ``status``)
    │   ├── NoCommonSubprotocol
    │   └── NoDefaultSubprotocol
    ├── DecodeError (also ValueError)      a payload is not a message of the serializer's format
    ├── ConnectionClosed                   the connection is closed (``code``, ``reason``)
    ├── RequestError                       a chat/pubsub request answered with an error
    ├── HubUnavailable                     a shared hub (Redis) cannot be reached right now
    └── RPCError                           a JSON-RPC error object (``code``, ``message``, ``data``)
        └── InvalidParams
"""

from __future__ import annotations

import errno
from collections.abc import Sequence
from typing import Any


class WskitError(Exception):
    """Root of every exception wskit raises on purpose."""


class SettingsError(WskitError, ValueError):
    """A setting has a value wskit cannot use; the message says which and why."""


class ListenError(WskitError):
    """A server could not start listening; the message says where and what to do."""


class HandshakeError(WskitError):
    """The server refused the WebSocket handshake or answered something invalid.

    ``status`` is the HTTP status of a refusal and ``reason`` its reason
    phrase; ``status`` is None when the handshake failed otherwise (then
    ``reason`` says how).
    """

    def __init__(self, reason: str, status: int | None = None):
        self.reason = reason
        self.status = status
        super().__init__(reason if status is None else f"server refused the handshake: HTTP {status} {reason}".rstrip())


class NegotiationError(WskitError):
    """The handshake cannot go on; ``status`` is the HTTP status to answer with."""

    status = 400


# A refusal names at most this many of the client's offered subprotocols.
MAX_NAMES_SHOWN = 10


def name_list(names: Sequence[str], limit: int = MAX_NAMES_SHOWN) -> str:
    """``names`` comma-separated, at most ``limit`` of them and a count of the rest.

    >>> name_list(["a", "b", "c"], 2)
    'a, b and 1 more'
    >>> name_list([f"p{i}" for i in range(10000)], 2)
    'p0, p1 and 9,998 more'
    """
    if not names:
        return "none"
    shown = ", ".join(names[:limit])
    rest = len(names) - limit
    return f"{shown} and {rest:,} more" if rest > 0 else shown


class NoCommonSubprotocol(NegotiationError):
    """The client offered subprotocols, none of which this server serves."""

    def __init__(self, offered: Sequence[str], supported: Sequence[str]):
        self.offered = tuple(offered)
        self.supported = tuple(supported)
        super().__init__(
            "no supported subprotocol offered (offered: {}; supported: {})".format(
                name_list(self.offered), ", ".join(self.supported) or "none"
            )
        )


class NoDefaultSubprotocol(NegotiationError):
    """The client offered no subprotocol and the server has no default."""

    def __init__(self, supported: Sequence[str]):
        self.supported = tuple(supported)
        super().__init__(
            "a subprotocol is required (supported: {})".format(", ".join(self.supported) or "none")
        )


class DecodeError(WskitError, ValueError):
    """A payload is not a valid message in the serializer's format."""


class ConnectionClosed(WskitError):
    """The connection is closed; ``code`` and ``reason`` are the close frame's (1006: none arrived)."""

    def __init__(self, code: int | None, reason: str | None = None):
        self.code = code if code is not None else 1006
        self.reason = reason or ""
        super().__init__(f"connection closed: code={self.code}" + (f" reason={self.reason}" if self.reason else ""))


class RequestError(WskitError):
    """The server answered a chat or pubsub request with ``{"type": "error", ...}``."""

    def __init__(self, code: str, message: str):
        self.code = code
        self.message = message
        super().__init__(f"{code}: {message}")


class HubUnavailable(WskitError):
    """A shared hub cannot reach its broker (Redis) right now; it is reconnecting.

    Operations that need the broker (storing a chat message, reading history,
    presence) fail with it; plain publishes still reach this process's subscribers.
    """


def check_tls_files(settings: Any) -> None:
    """Raise :class:`ListenError` unless the TLS certificate and key files can be read."""
    where = settings.endpoint or f"{settings.host}:{settings.port}"
    for what, path in (("certificate", settings.tls.cert), ("key", settings.tls.key)):
        if not path:
            continue
        try:
            with open(path, "rb"):
                pass
        except OSError as exc:
            raise ListenError(f"cannot listen on {where}: cannot read TLS {what} {path}: "
                              f"{exc.strerror or exc} (check --tls-cert/--tls-key)") from None


def describe_listen_error(exc: BaseException, settings: Any) -> str:
    """One line saying where a server could not listen, why, and what to do."""
    where = settings.endpoint or f"{settings.host}:{settings.port}"
    text = str(exc).strip() or type(exc).__name__
    code = getattr(exc, "errno", None)
    # Twisted wraps the socket error in CannotListenError; look inside.
    inner = getattr(exc, "socketError", None)
    if inner is not None:
        code, text = getattr(inner, "errno", code), str(inner)
    if code == errno.EADDRINUSE or "in use" in text:
        return f"cannot listen on {where}: address already in use (pick another --port, or stop what uses it)"
    if code == errno.EACCES or "ermission denied" in text:
        return (f"cannot listen on {where}: permission denied (ports below 1024 need root; "
                f"with twistd, bind as root and drop privileges with -u/-g)")
    if code == errno.EADDRNOTAVAIL:
        return f"cannot listen on {where}: no such address on this machine (check --host)"
    if isinstance(exc, FileNotFoundError) and exc.filename:
        return f"cannot listen on {where}: no such file {exc.filename} (check --tls-cert/--tls-key)"
    if isinstance(exc, PermissionError) and exc.filename:
        return f"cannot listen on {where}: cannot read {exc.filename} (check its permissions)"
    if "SSL" in type(exc).__name__ or "OpenSSL" in type(exc).__module__ or "PEM" in text:
        return f"cannot listen on {where}: TLS certificate or key unusable: {text} (check --tls-cert/--tls-key)"
    if isinstance(exc, OSError) and exc.strerror:
        return f"cannot listen on {where}: {exc.strerror}"
    return f"cannot listen on {where}: {text}"


__all__ = [
    "ConnectionClosed",
    "DecodeError",
    "HandshakeError",
    "ListenError",
    "NegotiationError",
    "NoCommonSubprotocol",
    "NoDefaultSubprotocol",
    "RequestError",
    "SettingsError",
    "WskitError",
    "check_tls_files",
    "describe_listen_error",
]
